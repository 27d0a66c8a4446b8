"""Placement: its database, a service user in Keystone, the catalogue entry, uwsgi on 8778."""

from benchbed.engines.debian_services import Context, Recipe
from benchbed.engines.debian_services.common import (
    authtoken,
    create_database,
    database_url,
    migrate,
    register_service,
    restart_and_wait,
    service_url,
    tune_uwsgi,
    write_config,
)
from benchbed.ports import tcp

PORT = 8778

PLACEMENT_CONF = """\
[DEFAULT]
pybasedir = /usr/lib/python3/dist-packages

[api]
auth_strategy = keystone

[placement_database]
connection = {connection}

{authtoken}"""


def placement_url(address: str) -> str:
    return service_url(address, PORT)


def configure(ctx: Context) -> None:
    db_password = ctx.passwords["placement_database"]
    service_password = ctx.passwords["placement"]
    with ctx.step("placement: database", None):
        create_database(ctx, "placement", "placement", db_password)
    url = placement_url(ctx.address)
    register_service(ctx, "placement", "placement", "OpenStack Placement", url)
    with ctx.step("placement: configuration", None):
        text = PLACEMENT_CONF.format(
            connection=database_url(ctx, "placement", "placement", db_password),
            authtoken=authtoken(ctx, "placement", service_password))
        write_config(ctx, "/etc/placement/placement.conf", text, "placement")
        tune_uwsgi(ctx, "/etc/placement/placement-api-uwsgi.ini")
    with ctx.step("placement: db sync", None):
        migrate(ctx, "placement", "placement-api",
                "runuser -u placement -- placement-manage db sync")
    with ctx.step("placement: start", f"uwsgi on port {PORT}"):
        restart_and_wait(ctx, "placement-api", f"http://127.0.0.1:{PORT}/")


RECIPE = Recipe(
    name="placement",
    packages=("placement-api",),
    preseed=("placement-common placement/configure_db boolean false",
             "placement-common placement/configure_ksat boolean false",
             "placement-api placement/configure_api-endpoint boolean false"),
    paths=("/etc/placement", "/var/lib/placement", "/var/log/placement"),
    services=("placement-api",),
    ports=tcp(PORT),
    configure=configure,
)
