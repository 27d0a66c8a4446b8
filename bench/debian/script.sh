#!/bin/sh
# bench/debian's baseline: the DebianEngine's installation steps as one plain shell script
# over SSH, ending with the same proof (token, catalogue, both endpoints answering).
# The apt and dpkg work (update, download, install with services kept stopped) runs
# benchbed's own apt.sh, so both sides install with the same options (--force-unsafe-io,
# --force-confdef/confold, the lock timeout, no recommends): only the orchestration differs.
# Usage: script.sh HOST KEY
set -eu
host=$1 key=$2
apt_sh=$(dirname "$0")/../../benchbed/scripts/debian/apt.sh
packages="mariadb-server python3-pymysql keystone glance-api"
ssh="ssh -i $key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes root@$host"
pw() { head -c 24 /dev/urandom | base64 | tr '+/' '-_'; }
admin=$(pw) kdb=$(pw) gdb=$(pw) gsvc=$(pw)
url=http://$host

$ssh sh -s <<EOF
set -e
command -v apt-get >/dev/null
debconf-set-selections <<'SEL'
keystone keystone/configure_db boolean false
keystone keystone/create-admin-tenant boolean false
keystone keystone/register-endpoint boolean false
glance-common glance/configure_db boolean false
glance-common glance/configure_rabbit boolean false
glance-common glance/configure_ksat boolean false
glance-api glance/configure_api-endpoint boolean false
SEL
EOF
$ssh sh -s -- update < "$apt_sh"
# shellcheck disable=SC2086  # one package name per word
$ssh sh -s -- download $packages < "$apt_sh"
# shellcheck disable=SC2086  # one package name per word
$ssh sh -s -- install $packages < "$apt_sh"

$ssh sh -s <<EOF
set -e
service mariadb start
until mysqladmin ping >/dev/null 2>&1; do sleep 0.5; done
mysql <<SQL
CREATE DATABASE keystone CHARACTER SET utf8mb4;
CREATE USER 'keystone'@'localhost' IDENTIFIED BY '$kdb';
GRANT ALL PRIVILEGES ON keystone.* TO 'keystone'@'localhost';
CREATE DATABASE glance CHARACTER SET utf8mb4;
CREATE USER 'glance'@'localhost' IDENTIFIED BY '$gdb';
GRANT ALL PRIVILEGES ON glance.* TO 'glance'@'localhost';
SQL

cat > /etc/keystone/keystone.conf <<CONF
[database]
connection = mysql+pymysql://keystone:$kdb@127.0.0.1/keystone?charset=utf8mb4
[token]
provider = fernet
CONF
chown root:keystone /etc/keystone/keystone.conf
chmod 640 /etc/keystone/keystone.conf
sed -i -e 's/^processes = .*/processes = 4/' -e 's/^threads = .*/threads = 1/' \
  -e '/^\[uwsgi\]/a add-header = Connection: close' /etc/keystone/keystone-uwsgi.ini
runuser -u keystone -- keystone-manage db_sync
keystone-manage fernet_setup --keystone-user keystone --keystone-group keystone
keystone-manage credential_setup --keystone-user keystone --keystone-group keystone
OS_BOOTSTRAP_PASSWORD='$admin' runuser -u keystone -- keystone-manage bootstrap \
  --bootstrap-username admin --bootstrap-project-name admin --bootstrap-role-name admin \
  --bootstrap-service-name keystone --bootstrap-region-id RegionOne \
  --bootstrap-admin-url $url:5000/v3/ --bootstrap-public-url $url:5000/v3/ \
  --bootstrap-internal-url $url:5000/v3/
service keystone restart
until python3 -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:5000/v3/")' 2>/dev/null; do sleep 0.5; done

python3 - <<PY
from keystoneauth1 import session
from keystoneauth1.identity import v3
s = session.Session(auth=v3.Password(auth_url="$url:5000/v3", username="admin",
    password="$admin", project_name="admin", user_domain_name="Default",
    project_domain_name="Default"))
k = "$url:5000/v3"
project = s.post(k + "/projects", json={"project": {"name": "service", "domain_id": "default"}}).json()["project"]["id"]
user = s.post(k + "/users", json={"user": {"name": "glance", "password": "$gsvc", "domain_id": "default", "default_project_id": project}}).json()["user"]["id"]
role = s.get(k + "/roles", params={"name": "admin"}).json()["roles"][0]["id"]
s.put(k + "/projects/%s/users/%s/roles/%s" % (project, user, role))
service = s.post(k + "/services", json={"service": {"type": "image", "name": "glance"}}).json()["service"]["id"]
for interface in ("public", "internal", "admin"):
    s.post(k + "/endpoints", json={"endpoint": {"service_id": service, "interface": interface, "region_id": "RegionOne", "url": "$url:9292"}})
PY

cat > /etc/glance/glance-api.conf <<CONF
[database]
connection = mysql+pymysql://glance:$gdb@127.0.0.1/glance?charset=utf8mb4
[glance_store]
stores = file,http
default_store = file
filesystem_store_datadir = /var/lib/glance/images/
[keystone_authtoken]
www_authenticate_uri = $url:5000
auth_url = $url:5000
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = glance
password = $gsvc
[paste_deploy]
flavor = keystone
CONF
chown root:glance /etc/glance/glance-api.conf
chmod 640 /etc/glance/glance-api.conf
runuser -u glance -- glance-manage db_sync
service glance-api restart
until python3 -c 'import urllib.request as u, urllib.error as e
try: u.urlopen("http://127.0.0.1:9292/")
except e.HTTPError: pass' 2>/dev/null; do sleep 0.5; done
EOF

# The proof, from this machine: a token, a catalogue with both services, both endpoints.
auth='{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin",
  "domain": {"name": "Default"}, "password": "'$admin'"}}}, "scope": {"project": {"name": "admin",
  "domain": {"name": "Default"}}}}}'
token=$(curl -sf -D - -o /dev/null -H 'Content-Type: application/json' -d "$auth" \
  "$url:5000/v3/auth/tokens" | awk -F': ' 'tolower($1) == "x-subject-token" {print $2}' | tr -d '\r')
[ -n "$token" ]
catalog=$(curl -sf -H "X-Auth-Token: $token" "$url:5000/v3/auth/catalog")
case $catalog in *'"image"'*) ;; *) echo "no image service in the catalogue" >&2; exit 1 ;; esac
curl -sf -o /dev/null -H "X-Auth-Token: $token" "$url:5000/v3/"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Auth-Token: $token" "$url:9292/")" -lt 500 ]
echo "script: OpenStack on $host answers"
