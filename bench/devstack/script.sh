#!/bin/sh
# bench/devstack's baseline: DevstackEngine's steps as one plain shell script over SSH, on a
# container made with raw LXC commands, with the same adaptations to a container (KSM,
# iscsid, tun, OVN's bridge on the netdev datapath), ending with a Keystone token.
# Usage: script.sh HOST KEY GIT_BASE PIP_INDEX_URL LOCAL_CONF ADMIN_PASSWORD
set -eu
host=$1 key=$2 git_base=$3 index=$4 local_conf=$5 password=$6
ssh="ssh -i $key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes root@$host"
mirror=${index#http://}
mirror=${mirror%%:*}

$ssh sh -s "$git_base" "$index" "$mirror" <<'EOF2'
set -e
export DEBIAN_FRONTEND=noninteractive
apt-get -q update >/dev/null
apt-get -q -y install --no-install-recommends git sudo >/dev/null
if [ -w /sys/kernel/mm/ksm/run ] || [ ! -e /sys/kernel/mm/ksm/run ]; then :; else
    mount -t tmpfs -o size=4k benchbed-no-ksm /sys/kernel/mm/ksm
fi
[ -e /dev/net/tun ] || { mkdir -p /dev/net && mknod -m 666 /dev/net/tun c 10 200; }
mkdir -p /etc/systemd/system/iscsid.service.d
printf '[Unit]\nConditionVirtualization=!container\n' \
    > /etc/systemd/system/iscsid.service.d/50-no-container.conf
systemctl daemon-reload
useradd -s /bin/bash -d /opt/stack -m stack
chmod 755 /opt/stack
echo 'stack ALL=(root) NOPASSWD:ALL' > /etc/sudoers.d/50_stack_sh
chmod 440 /etc/sudoers.d/50_stack_sh
printf '[global]\nindex-url = %s\ntimeout = 120\ntrusted-host = %s\n' "$2" "$3" > /etc/pip.conf
sudo -u stack -H git clone -q --depth 1 --branch stable/2025.1 "$1/openstack/devstack.git" \
    /opt/stack/devstack
EOF2
$ssh "cat > /opt/stack/devstack/local.conf && chown stack: /opt/stack/devstack/local.conf" \
    < "$local_conf"
$ssh "cd /opt/stack/devstack && sudo -u stack -H ./stack.sh" > "$local_conf.out" 2>&1
$ssh "ovs-vsctl set open . external_ids:ovn-bridge-datapath-type=netdev &&
      ovs-vsctl set bridge br-int datapath_type=netdev"
curl -sf -m 30 -o /dev/null -w '%{http_code}\n' -H 'Content-Type: application/json' \
    -d "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"admin\",\"domain\":{\"id\":\"default\"},\"password\":\"$password\"}}},\"scope\":{\"project\":{\"name\":\"admin\",\"domain\":{\"id\":\"default\"}}}}}" \
    "http://$host/identity/v3/auth/tokens"
