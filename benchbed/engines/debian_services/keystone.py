"""Keystone: its database, fernet and credential keys, bootstrap, and the API under uwsgi.

The package's own debconf path (create-admin-tenant, register-endpoint) makes about 30
CLI calls and breaks on SQLite; it is switched off and the documented `keystone-manage`
steps are run here instead, each of them safe to repeat (bootstrap, once done, becomes
two SQL statements: the new admin password and address). The fernet and credential keys
are written by a script of ours (the same format, without keystone-manage's start-up), and
belong to the machine they were made on: a server started from a snapshot makes its own.
"""

import re

from benchbed.engines.debian_services import Context, Recipe
from benchbed.engines.debian_services.common import (
    create_database,
    database_url,
    migrate,
    restart,
    service_url,
    tune_uwsgi,
    wait_http,
    write_config,
)
from benchbed.errors import BenchbedError
from benchbed.ports import tcp
from benchbed.server import run_script

KEYSTONE_CONF = """\
[database]
connection = {connection}

[token]
provider = fernet
"""


# Whether bootstrap has run: the admin user and the region's three identity endpoints, which
# keystone-manage bootstrap makes last.
BOOTSTRAPPED = """\
SELECT COUNT(*) FROM local_user WHERE name = 'admin' AND domain_id = 'default';
SELECT COUNT(*) FROM endpoint e JOIN service s ON s.id = e.service_id WHERE s.type = 'identity'
  AND e.region_id = '{region}' AND e.interface IN ('public', 'internal', 'admin');
"""
UPDATE_ADMIN = """\
UPDATE password SET password_hash = '{hash}' WHERE local_user_id =
  (SELECT id FROM local_user WHERE name = 'admin' AND domain_id = 'default')
  ORDER BY created_at_int DESC LIMIT 1;
UPDATE endpoint e JOIN service s ON s.id = e.service_id SET e.url = '{url}'
  WHERE s.type = 'identity' AND e.region_id = '{region}';
"""
HASH = ("import sys, bcrypt; sys.stdout.write(bcrypt.hashpw(sys.stdin.buffer.readline()"
        ".rstrip(b'\\n'), bcrypt.gensalt(12)).decode())")
# values spliced into the SQL above
BCRYPT_HASH = re.compile(r"\$2b\$12\$[./A-Za-z0-9]{53}")
REGION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
IDENTITY_URL = re.compile(r"http://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):5000/v3/")

# Debian's uwsgi for Keystone listens on every address
PORT = 5000
KEY_DIRECTORIES = ("/etc/keystone/fernet-keys", "/etc/keystone/credential-keys")
# the machine-id of the machine the keys were made on
KEYS_MADE_ON = "/etc/keystone/benchbed-keys-machine-id"


def base_url(address: str) -> str:
    return service_url(address, PORT)


def make_keys(ctx: Context) -> None:
    """Fernet and credential keys of this machine: kept on a re-run, made anew on a server
    whose keys were made on another machine (one started from a snapshot of it)."""
    run_script(ctx.server.ssh, "debian/keystone-keys.sh", [KEYS_MADE_ON, *KEY_DIRECTORIES],
               timeout=60)


def bootstrap(ctx: Context, url: str) -> None:
    """The admin user, its project and role, the region and the identity endpoints at `url`.

    Where they exist (a re-run, a server started from a snapshot) only the admin password
    and the endpoints' address can differ: they are written to Keystone's tables directly
    (the password as Keystone hashes it, bcrypt of 12 rounds), not through
    `keystone-manage bootstrap`, whose start-up alone costs seconds of CPU.
    """
    if not REGION.fullmatch(ctx.region) or not IDENTITY_URL.fullmatch(url):
        raise BenchbedError(f"region {ctx.region!r} or URL {url!r} cannot go into SQL")
    database = ctx.database_server.ssh
    mysql = "mysql --protocol=socket -u root -N keystone"
    found = database.run(mysql, stdin=BOOTSTRAPPED.format(region=ctx.region),
                         timeout=60).stdout.split()
    if found != ["1", "3"]:
        # the password travels on stdin, never on a command line
        ctx.run(["sh", "-c", 'read -r OS_BOOTSTRAP_PASSWORD && export OS_BOOTSTRAP_PASSWORD '
                 '&& exec "$@"', "bootstrap", "runuser", "-u", "keystone", "--",
                 "keystone-manage", "bootstrap", "--bootstrap-username", "admin",
                 "--bootstrap-project-name", "admin", "--bootstrap-role-name", "admin",
                 "--bootstrap-service-name", "keystone", "--bootstrap-region-id", ctx.region,
                 "--bootstrap-admin-url", url, "--bootstrap-public-url", url,
                 "--bootstrap-internal-url", url],
                stdin=ctx.passwords["admin"] + "\n", timeout=300)
        return
    hashed = ctx.run(["python3", "-c", HASH], stdin=ctx.passwords["admin"] + "\n").strip()
    if not BCRYPT_HASH.fullmatch(hashed):
        raise BenchbedError("bcrypt gave no password hash")
    database.run(mysql, stdin=UPDATE_ADMIN.format(hash=hashed, url=url, region=ctx.region),
                 timeout=60)


def _wait(ctx: Context) -> None:
    with ctx.step("keystone: wait", "http://127.0.0.1:5000/v3/"):
        wait_http(ctx, "http://127.0.0.1:5000/v3/")


def configure(ctx: Context) -> None:
    password = ctx.passwords["keystone_database"]
    with ctx.step("keystone: database", None):
        create_database(ctx, "keystone", "keystone", password)
    with ctx.step("keystone: configuration", None):
        write_config(ctx, "/etc/keystone/keystone.conf",
                     KEYSTONE_CONF.format(connection=database_url(ctx, "keystone", "keystone",
                                                                   password)), "keystone")
        tune_uwsgi(ctx, "/etc/keystone/keystone-uwsgi.ini")
    with ctx.step("keystone: db_sync", None):
        migrate(ctx, "keystone", "keystone", "runuser -u keystone -- keystone-manage db_sync")
    with ctx.step("keystone: fernet and credential keys", None):
        make_keys(ctx)
    # uwsgi loads Keystone (seconds of CPU) while the admin user is made or updated (the
    # database is read per request) and the next service is configured and started
    with ctx.step("keystone: start", f"uwsgi on port {PORT}"):
        restart(ctx, "keystone")
    url = f"{base_url(ctx.address)}/v3/"
    with ctx.step("keystone: bootstrap", f"admin, region {ctx.region}, {url}"):
        bootstrap(ctx, url)
    ctx.waiting["keystone"] = lambda: _wait(ctx)
    ctx.outputs["auth_url"] = f"{base_url(ctx.address)}/v3"


RECIPE = Recipe(
    name="keystone",
    packages=("keystone",),
    preseed=("keystone keystone/configure_db boolean false",
             "keystone keystone/create-admin-tenant boolean false",
             "keystone keystone/register-endpoint boolean false"),
    paths=("/etc/keystone", "/var/lib/keystone", "/var/log/keystone"),
    services=("keystone",),
    ports=tcp(PORT),
    configure=configure,
)
