"""Neutron's server with ML2: neutron-api (uwsgi on 9696) and neutron-rpc-server.

No agent runs here: networks, subnets, routers, floating IPs, ports and security groups are
API and database work, which is what the control plane is benchmarked on (the `router` plugin
gives the API of the last two; without an L3 agent nothing routes). Rally's cleanup lists
floating IPs and logs an error for each context where that API is missing. Binding a port to a
host needs an L2 agent there: the `linuxbridge` mechanism driver binds ports on hosts that run
the nova-compute-qemu recipe (its Linux bridge agent); fake computes boot servers without a NIC."""

from benchbed.engines.debian_services import Context, Recipe
from benchbed.engines.debian_services.common import (
    authtoken,
    create_database,
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

PORT = 9696
ML2_CONF_PATH = "/etc/neutron/plugins/ml2/ml2_conf.ini"
# neutron-rpc-server: one RPC worker and one for agents' state reports (with no agent
# there are none to serve); the API's workers are uwsgi's.
RPC_WORKERS = 1

NEUTRON_CONF = """\
[DEFAULT]
core_plugin = ml2
service_plugins = router
auth_strategy = keystone
transport_url = {transport_url}
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
rpc_workers = {rpc_workers}
rpc_state_report_workers = {rpc_workers}

[database]
connection = {connection}

# Zed marks the Linux bridge driver experimental: without this, ML2 refuses to load it
[experimental]
linuxbridge = true

[oslo_concurrency]
lock_path = /var/lib/neutron/lock

[oslo_messaging_notifications]
driver = noop

{authtoken}"""

# vxlan for projects' own networks (segments are only allocated: no agent builds them),
# flat and vlan for networks an admin maps to a physical network. Every API worker writes
# the whole VNI range into the database at start, so the range is kept small: 1000 is
# enough for a benchmark's networks.
ML2_CONF = """\
[ml2]
type_drivers = flat,vlan,vxlan
tenant_network_types = vxlan
mechanism_drivers = linuxbridge
extension_drivers = port_security

[ml2_type_flat]
flat_networks = *

[ml2_type_vxlan]
vni_ranges = 1:1000

[securitygroup]
enable_security_group = true
"""


def network_url(address: str) -> str:
    return service_url(address, PORT)


def configure(ctx: Context) -> None:
    db_password = ctx.passwords["neutron_database"]
    service_password = ctx.passwords["neutron"]
    with ctx.step("neutron: database", None):
        create_database(ctx, "neutron", "neutron", db_password)
    url = network_url(ctx.address)
    register_service(ctx, "neutron", "network", "OpenStack Networking", url)
    with ctx.step("neutron: configuration", "ML2, no agents"):
        text = NEUTRON_CONF.format(
            transport_url=transport_url("openstack", ctx.passwords["rabbit"],
                                        ctx.database_host),
            rpc_workers=RPC_WORKERS,
            connection=database_url(ctx, "neutron", "neutron", db_password),
            authtoken=authtoken(ctx, "neutron", service_password))
        write_config(ctx, "/etc/neutron/neutron.conf", text, "neutron")
        write_config(ctx, ML2_CONF_PATH, ML2_CONF, "neutron")
        tune_uwsgi(ctx, "/etc/neutron/neutron-api-uwsgi.ini")
    with ctx.step("neutron: db upgrade", None):
        ctx.run("runuser -u neutron -- neutron-db-manage --config-file /etc/neutron/neutron.conf "
                f"--config-file {ML2_CONF_PATH} upgrade head", timeout=900)
    with ctx.step("neutron: start", f"neutron-api on port {PORT}, neutron-rpc-server"):
        restart(ctx, "neutron-rpc-server")
        restart_and_wait(ctx, "neutron-api", f"http://127.0.0.1:{PORT}/")


# Every question of the packages' own set-up is answered "no": benchbed writes the configs.
NEUTRON_PRESEED = tuple(f"{package} {question} boolean false" for package, question in (
    ("neutron-common", "neutron/configure_db"), ("neutron-common", "neutron/configure_rabbit"),
    ("neutron-common", "neutron/configure_ksat"), ("neutron-common", "neutron/configure_nova"),
    ("neutron-api", "neutron/configure_api-endpoint")))

RECIPE = Recipe(
    name="neutron",
    packages=("neutron-api", "neutron-rpc-server"),
    preseed=NEUTRON_PRESEED,
    paths=("/etc/neutron", "/var/lib/neutron", "/var/log/neutron"),
    services=("neutron-api", "neutron-rpc-server"),
    ports=tcp(PORT),
    configure=configure,
)
