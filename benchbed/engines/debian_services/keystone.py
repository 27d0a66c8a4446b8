"""Keystone: its database, fernet and credential keys, bootstrap, and the API under uwsgi.

The package's own debconf path (create-admin-tenant, register-endpoint) makes about 30
CLI calls and breaks on SQLite; it is switched off and the documented `keystone-manage`
steps are run here instead, each of them safe to repeat. The fernet and credential keys
are written by a script of ours (the same format, without keystone-manage's start-up), and
belong to the machine they were made on: a server started from a snapshot makes its own.
"""

from benchbed.engines.debian_services import Context, Recipe
from benchbed.engines.debian_services.common import (
    create_database,
    database_url,
    migrate,
    restart_and_wait,
    service_url,
    tune_uwsgi,
    write_config,
)
from benchbed.server import run_script

KEYSTONE_CONF = """\
[database]
connection = {connection}

[token]
provider = fernet
"""


KEY_DIRECTORIES = ("/etc/keystone/fernet-keys", "/etc/keystone/credential-keys")
# the machine-id of the machine the keys were made on
KEYS_MADE_ON = "/etc/keystone/benchbed-keys-machine-id"


def base_url(address: str) -> str:
    return service_url(address, 5000)


def make_keys(ctx: Context) -> None:
    """Fernet and credential keys of this machine: kept on a re-run, made anew on a server
    whose keys were made on another machine (one started from a snapshot of it)."""
    run_script(ctx.server.ssh, "debian/keystone-keys.sh", [KEYS_MADE_ON, *KEY_DIRECTORIES],
               timeout=60)


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
    url = f"{base_url(ctx.address)}/v3/"
    with ctx.step("keystone: bootstrap", f"admin, region {ctx.region}, {url}"):
        # the password travels on stdin, never on a command line
        ctx.run(["sh", "-c", 'read -r OS_BOOTSTRAP_PASSWORD && export OS_BOOTSTRAP_PASSWORD '
                 '&& exec "$@"', "bootstrap", "runuser", "-u", "keystone", "--",
                 "keystone-manage", "bootstrap", "--bootstrap-username", "admin",
                 "--bootstrap-project-name", "admin", "--bootstrap-role-name", "admin",
                 "--bootstrap-service-name", "keystone", "--bootstrap-region-id", ctx.region,
                 "--bootstrap-admin-url", url, "--bootstrap-public-url", url,
                 "--bootstrap-internal-url", url],
                stdin=ctx.passwords["admin"] + "\n", timeout=300)
    with ctx.step("keystone: start", "uwsgi on port 5000"):
        restart_and_wait(ctx, "keystone", "http://127.0.0.1:5000/v3/")
    ctx.outputs["auth_url"] = f"{base_url(ctx.address)}/v3"


RECIPE = Recipe(
    name="keystone",
    packages=("keystone",),
    preseed=("keystone keystone/configure_db boolean false",
             "keystone keystone/create-admin-tenant boolean false",
             "keystone keystone/register-endpoint boolean false"),
    paths=("/etc/keystone", "/var/lib/keystone", "/var/log/keystone"),
    services=("keystone",),
    configure=configure,
)
