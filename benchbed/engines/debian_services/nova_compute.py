"""nova-compute with Nova's fake virt driver: a compute node that costs no hypervisor.

Package choice: nova-compute Depends on `nova-compute-kvm | nova-compute-hypervisor`. The
providers of the latter are -kvm, -qemu, -lxc (each pulls libvirt-daemon-system, -kvm and
-qemu qemu-system too) and -ironic, which adds only python3-ironicclient and python3-libvirt:
the lightest way to satisfy the dependency when the driver is `fake.FakeDriver`.
-ironic's /etc/nova/nova-compute.conf (read after nova.conf) names the Ironic driver; it is
rewritten here with the fake one.

Each compute server gets accounts of its own in the controller's RabbitMQ and Keystone
(`compute-ADDRESS`), so that joining never changes the controller's own passwords. Nova's
`host` and `my_ip` are the server's hostname and address, found by nova-compute at start, so
that clones of a prepared server (LxcEngine) differ without a config of their own; the hosts
are mapped into the cell by their controller once every node has reported in. Such clones
boot with nova-compute held back (`hold_at_boot`): N of them starting it at once, each start
costing seconds of CPU, would compete with their own boots; `start_held` starts it once a
clone is known to be itself.
"""

from benchbed.engines.debian_services import Context, Recipe, rabbitmq
from benchbed.engines.debian_services.catalogue import Catalogue
from benchbed.engines.debian_services.common import credentials, write_config
from benchbed.engines.debian_services.nova import COMMON_SECTIONS, NOVA_PRESEED
from benchbed.retry import wait_for
from benchbed.server import Server

CONFIG_PATH = "/etc/nova/nova-compute.conf"
LOG_PATH = "/var/log/nova/nova-compute.log"
# oslo.log's lines: date, time, pid, level, logger, message
LAST_PROBLEM = ('grep -E "^[^ ]+ [^ ]+ [0-9]+ (WARNING|ERROR|CRITICAL) " "$1" | tail -n 1 '
                '| cut -c 1-300')
JOIN_TIMEOUT = 300
# The unit is Type=notify: `systemctl start` returns once nova-compute has reported in.
# systemd's default start timeout proved too short for several start-ups at once on a busy
# host, and Restart=on-failure then started each again, unbounded by benchbed's batches.
START_TIMEOUT = 600
# One `discover_hosts` per deployment (MultihostEngine's, once every node is up), and one at a
# time on a controller besides (an operator's by hand): two discoveries at once race to map
# the same host into the cell, and one fails with DBDuplicateEntry on host_mappings' unique
# host (deployment tools that ran it from each node in parallel have reported it since 2018).
DISCOVER_LOCK = "/run/lock/benchbed-nova-discover-hosts"
DISCOVER_TIMEOUT = 600
DISCOVER_HOSTS = ["flock", DISCOVER_LOCK, "runuser", "-u", "nova", "--", "nova-manage",
                  "cell_v2", "discover_hosts"]
# nova-compute starts at boot only where this file is; a clone gets it once checked
RELEASED = "/etc/nova/benchbed-start-at-boot"
HOLD_DROP_IN = "/etc/systemd/system/nova-compute.service.d/benchbed-hold.conf"
HOLD_UNIT = f"""\
# benchbed: started at boot only once benchbed has released this server ({RELEASED})
[Unit]
ConditionPathExists={RELEASED}

[Service]
TimeoutStartSec={START_TIMEOUT}
"""

NOVA_COMPUTE_CONF = """\
[DEFAULT]
compute_driver = fake.FakeDriver
state_path = /var/lib/nova
transport_url = {transport_url}

""" + COMMON_SECTIONS + """
{placement}
{neutron}"""


def compute_user(address: str) -> str:
    return f"compute-{address}"


def configure(ctx: Context) -> None:
    user, password = compute_user(ctx.address), ctx.passwords["compute"]
    controller = ctx.database_server
    with ctx.step("nova-compute: message queue account", user):
        rabbitmq.ensure_user(controller, user, password)
    catalogue = Catalogue(ctx.outputs["auth_url"], ctx.passwords["admin"])
    with ctx.step("nova-compute: register in keystone", user):
        catalogue.service_user(user, password)
    with ctx.step("nova-compute: configuration", "fake virt driver"):
        text = NOVA_COMPUTE_CONF.format(
            transport_url=rabbitmq.transport_url(user, password, ctx.database_host),
            placement=credentials(ctx, "placement", user, password),
            neutron=credentials(ctx, "neutron", user, password))
        write_config(ctx, CONFIG_PATH, text, "nova")
    host = ctx.run("hostname").strip()
    with ctx.step("nova-compute: start", host):
        ctx.run("service nova-compute restart", timeout=120)
    with ctx.step("nova-compute: up and in Placement", host):
        try:
            join(catalogue, ctx.region, [host])
        except TimeoutError as timed_out:
            raise TimeoutError(f"{timed_out}; {unit_report(ctx.server)}") from None
    map_own(ctx, host)
    ctx.outputs["compute_hosts"] = [host]


def map_own(ctx: Context, host: str) -> None:
    """On a server that runs Nova itself, map its own compute into the cell: no
    MultihostEngine controller will (a node's are mapped by its controller, at once)."""
    if ctx.database is None:
        with ctx.step("nova-compute: map into the cell", host):
            discover_hosts(ctx.server)


def join(catalogue: Catalogue, region: str, hosts: list[str],
         timeout: float = JOIN_TIMEOUT) -> None:
    """Wait until every host's nova-compute is `up` and has a Placement resource provider
    (both come before the host is mapped into the cell: MultihostEngine maps every node's
    hosts at once, by its controller's map_computes)."""
    wanted = set(hosts)
    up: set[str] = set()

    def all_up() -> bool:
        up.clear()
        up.update(s["host"] for s in catalogue.compute_services(region) if s["state"] == "up")
        return wanted <= up

    try:
        wait_for(all_up, timeout=timeout, what=f"nova-compute up on {len(wanted)} host(s)",
                 interval=1, max_interval=5)
    except TimeoutError as timed_out:
        raise TimeoutError(f"{timed_out} (not up: {', '.join(sorted(wanted - up))})") from None

    def all_providers() -> bool:
        return wanted <= {p["name"] for p in catalogue.resource_providers(region)}

    wait_for(all_providers, timeout=timeout, interval=1, max_interval=5,
             what=f"a Placement resource provider for each of {len(wanted)} host(s)")


def discover_hosts(controller: Server) -> None:
    """Map the compute hosts that are up into the controller's cell (Debian's nova-manage)."""
    controller.ssh.run(DISCOVER_HOSTS, timeout=DISCOVER_TIMEOUT)


def unit_report(server: Server) -> str:
    """What a nova-compute that never reported in is doing: its unit's state and restarts,
    and the last warning or error in its log (a conductor it cannot reach, a refused
    password), so that the failure names its cause."""
    shown = server.ssh.run(["systemctl", "show", "-p", "ActiveState", "-p", "SubState",
                            "-p", "NRestarts", "nova-compute"], timeout=60, check=False).stdout
    state = dict(line.partition("=")[::2] for line in shown.splitlines())
    last = server.ssh.run(["sh", "-c", LAST_PROBLEM, "sh", LOG_PATH], timeout=60,
                          check=False).stdout.strip()
    return (f"nova-compute here is {state.get('ActiveState', '?')}/"
            f"{state.get('SubState', '?')} after {state.get('NRestarts', '?')} restart(s); "
            f"last problem in {LOG_PATH}: {last or 'none'}")


def hold_at_boot(server: Server) -> None:
    """Keep nova-compute from starting when this server (or a clone of it) boots."""
    server.ssh.run(["mkdir", "-p", HOLD_DROP_IN.rsplit("/", 1)[0]], timeout=60)
    server.ssh.put_file(HOLD_UNIT, HOLD_DROP_IN)


def start_held(server: Server) -> None:
    """Start a held-back nova-compute, and let it start at the server's later boots."""
    server.ssh.run(f"touch {RELEASED} && systemctl start nova-compute",
                   timeout=START_TIMEOUT + 60)


def forget(catalogue: Catalogue, region: str, host: str) -> None:
    """Remove a host's compute service (and with it its resource provider) from Nova."""
    for service in catalogue.compute_services(region):
        if service["host"] == host:
            catalogue.delete_compute_service(region, service["id"])


RECIPE = Recipe(
    name="nova-compute",
    packages=("nova-compute", "nova-compute-ironic"),
    preseed=NOVA_PRESEED,
    paths=("/etc/nova", "/var/lib/nova", "/var/log/nova"),
    services=("nova-compute",),
    configure=configure,
)
