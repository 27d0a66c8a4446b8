"""Glance with the file store: database, a service user in Keystone, the catalogue entry."""

from benchbed.engines.debian_services import Context, Recipe
from benchbed.engines.debian_services.common import (
    authtoken,
    create_database,
    database_url,
    migrate,
    register_service,
    restart,
    service_url,
    wait_http,
    write_config,
)
from benchbed.ports import tcp

GLANCE_API_CONF = """\
[database]
connection = {connection}

[glance_store]
stores = file,http
default_store = file
filesystem_store_datadir = /var/lib/glance/images/

{authtoken}
[paste_deploy]
flavor = keystone
"""


# glance-api's bind_port (its default, on every address)
PORT = 9292


def image_url(address: str) -> str:
    return service_url(address, PORT)


def configure(ctx: Context) -> None:
    db_password = ctx.passwords["glance_database"]
    service_password = ctx.passwords["glance"]
    with ctx.step("glance: database", None):
        create_database(ctx, "glance", "glance", db_password)
    with ctx.step("glance: configuration", None):
        text = GLANCE_API_CONF.format(
            connection=database_url(ctx, "glance", "glance", db_password),
            authtoken=authtoken(ctx, "glance", service_password))
        write_config(ctx, "/etc/glance/glance-api.conf", text, "glance")
    with ctx.step("glance: db_sync", None):
        migrate(ctx, "glance", "glance-api", "runuser -u glance -- glance-manage db_sync")
    # glance-api loads (seconds of CPU) while Keystone does and its user and endpoints are
    # made there: it asks Keystone about its user only when the first request comes
    with ctx.step("glance: start", f"glance-api on port {PORT}"):
        restart(ctx, "glance-api")
    ctx.ready("keystone")
    register_service(ctx, "glance", "image", "OpenStack Image service",
                     image_url(ctx.address))
    with ctx.step("glance: wait", "http://127.0.0.1:9292/"):
        wait_http(ctx, "http://127.0.0.1:9292/")


RECIPE = Recipe(
    name="glance",
    packages=("glance-api",),
    preseed=("glance-common glance/configure_db boolean false",
             "glance-common glance/configure_rabbit boolean false",
             "glance-common glance/configure_ksat boolean false",
             "glance-api glance/configure_api-endpoint boolean false"),
    paths=("/etc/glance", "/var/lib/glance", "/var/log/glance"),
    services=("glance-api",),
    ports=tcp(PORT),
    configure=configure,
)
