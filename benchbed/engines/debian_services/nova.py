"""Nova's control plane: nova-api (uwsgi on 8774), nova-conductor and nova-scheduler.

Three databases (nova_api, nova, nova_cell0) on one account, the cells set up with
nova-manage (cell0 and one cell, `cell1`), RabbitMQ for the services' messages. Compute
hosts are mapped into the cell by the nova-compute recipe, once they have reported in
(`discover_hosts`), rather than by the scheduler's periodic discovery.
"""

import shlex

from benchbed.engines.debian_services import Context, Recipe
from benchbed.engines.debian_services.common import (
    authtoken,
    create_database,
    credentials,
    database_url,
    register_service,
    restart,
    restart_and_wait,
    service_url,
    tune_uwsgi,
    write_config,
)
from benchbed.engines.debian_services.rabbitmq import transport_url
from benchbed.ports import tcp

PORT = 8774
# One conductor and one scheduler process for a few compute nodes: on a small server each
# extra worker is another Python process's memory, and a Rally task at concurrency 5 does not
# keep one of them busy. More nodes grow them (benchbed.scale).
CONDUCTOR_WORKERS = 1
SCHEDULER_WORKERS = 1

# Nova's cell mapping templates (nova/objects/cell_mapping.py: _format_url)
CELL_DB_URL = "{scheme}://{username}:{password}@{hostname}/{path}?{query}"
CELL0_URL = "{scheme}://{username}:{password}@{hostname}/{path}_cell0?{query}"
CELL_MQ_URL = "{scheme}://{username}:{password}@{hostname}:{port}/{path}"

# What every nova.conf benchbed writes says, the control plane's and each compute's
COMMON_SECTIONS = """\
[oslo_concurrency]
lock_path = /var/lib/nova/tmp

[oslo_messaging_notifications]
driver = noop

[vnc]
enabled = false
"""

NOVA_CONF = """\
[DEFAULT]
pybasedir = /usr/lib/python3/dist-packages
state_path = /var/lib/nova
my_ip = {address}
enabled_apis = osapi_compute
transport_url = {transport_url}

[api]
auth_strategy = keystone

[api_database]
connection = {api_connection}

[database]
connection = {connection}

[conductor]
workers = {conductor_workers}

[scheduler]
workers = {scheduler_workers}

""" + COMMON_SECTIONS + """
[cinder]
os_region_name = {region}

{authtoken}
{placement}
{neutron}"""


def compute_url(address: str) -> str:
    return f"{service_url(address, PORT)}/v2.1"


def configure(ctx: Context) -> None:
    db_password = ctx.passwords["nova_database"]
    service_password = ctx.passwords["nova"]
    with ctx.step("nova: databases", "nova_api, nova, nova_cell0"):
        for name in ("nova_api", "nova", "nova_cell0"):
            create_database(ctx, name, "nova", db_password)
    url = compute_url(ctx.address)
    register_service(ctx, "nova", "compute", "OpenStack Compute", url)
    with ctx.step("nova: configuration", None):
        text = NOVA_CONF.format(
            address=ctx.address, region=ctx.region,
            transport_url=transport_url("openstack", ctx.passwords["rabbit"],
                                        ctx.database_host),
            api_connection=database_url(ctx, "nova_api", "nova", db_password),
            connection=database_url(ctx, "nova", "nova", db_password),
            conductor_workers=ctx.control_plane.conductor_workers,
            scheduler_workers=ctx.control_plane.scheduler_workers,
            authtoken=authtoken(ctx, "nova", service_password),
            placement=credentials(ctx, "placement", "nova", service_password),
            neutron=credentials(ctx, "neutron", "nova", service_password))
        write_config(ctx, "/etc/nova/nova.conf", text, "nova")
        tune_uwsgi(ctx, "/etc/nova/nova-api-uwsgi.ini", ctx.control_plane.api_processes)
    with ctx.step("nova: api_db sync and cells", None):
        ctx.run("runuser -u nova -- nova-manage api_db sync", timeout=600)
        # The cells' URLs are templates that Nova fills from nova.conf, so they hold no
        # password and a re-run with new passwords needs no update (map_cell0 leaves an
        # existing cell0 alone; create_cell would refuse a second cell1).
        manage = "runuser -u nova -- nova-manage cell_v2"
        ctx.run(f"{manage} map_cell0 --database_connection {shlex.quote(CELL0_URL)}",
                timeout=300)
        ctx.run(f"{manage} list_cells | grep -qw cell1 || {manage} create_cell --name cell1 "
                f"--transport-url {shlex.quote(CELL_MQ_URL)} "
                f"--database_connection {shlex.quote(CELL_DB_URL)}", timeout=300)
    with ctx.step("nova: db sync", None):
        ctx.run("runuser -u nova -- nova-manage db sync", timeout=900)
    sized = ctx.control_plane
    with ctx.step("nova: start", f"nova-api on port {PORT} ({sized.api_processes} processes), "
                  f"nova-conductor ({sized.conductor_workers}), "
                  f"nova-scheduler ({sized.scheduler_workers})"):
        for service in ("nova-conductor", "nova-scheduler"):
            restart(ctx, service)
        restart_and_wait(ctx, "nova-api", f"http://127.0.0.1:{PORT}/")


# Every question of the packages' own set-up is answered "no": benchbed writes the configs.
NOVA_PRESEED = tuple(
    f"{package} {question} boolean false" for package, question in (
        ("nova-common", "nova/configure_db"), ("nova-common", "nova/configure_rabbit"),
        ("nova-common", "nova/configure_ksat"), ("nova-common", "nova/configure_neutron"),
        ("nova-common", "nova/configure_placement"), ("nova-api", "novaapi/configure_db"),
        ("nova-api", "nova/configure_api-endpoint")))

RECIPE = Recipe(
    name="nova",
    packages=("nova-api", "nova-conductor", "nova-scheduler"),
    preseed=NOVA_PRESEED,
    paths=("/etc/nova", "/var/lib/nova", "/var/log/nova"),
    services=("nova-api", "nova-conductor", "nova-scheduler"),
    ports=tcp(PORT),
    configure=configure,
)
