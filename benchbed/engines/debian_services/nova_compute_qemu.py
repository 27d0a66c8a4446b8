"""nova-compute with libvirt and QEMU software emulation: a compute node that boots real guests.

`/dev/kvm` on these machines hangs ordinary guests (DESIGN.md), so `virt_type = qemu` (TCG).
Guests get their NIC from Neutron's Linux bridge agent on the same server: a flat network on
physical network `provider`, mapped to the server's own interface (`interface`, eth0 in an
LXC container), so guests sit on the server's own L2 segment and the host reaches them with
an address of theirs on its bridge; no NAT, no router, no DHCP agent. Guests learn their
address, host name and key pair from a config drive (forced for every server: Nova writes it
with genisoimage), which the image built by benchbed.images.openstack reads at boot.

Nova waits for Neutron's `network-vif-plugged` event only where Neutron notifies Nova; no
agent here reports a port up to Nova, so the wait is off (`vif_plugging_timeout = 0`).
The agent's firewall is the no-op one: the server's iptables belong to the container.
"""

from benchbed.engines.debian_services import Context, Recipe, rabbitmq
from benchbed.engines.debian_services.catalogue import Catalogue
from benchbed.engines.debian_services.common import credentials, restart, write_config
from benchbed.engines.debian_services.neutron import NEUTRON_PRESEED
from benchbed.engines.debian_services.nova import COMMON_SECTIONS, NOVA_PRESEED
from benchbed.engines.debian_services.nova_compute import (
    CONFIG_PATH,
    compute_user,
    join,
    map_own,
)
from benchbed.errors import BenchbedError

PHYSICAL_NETWORK = "provider"
AGENT_CONFIG_PATH = "/etc/neutron/plugins/ml2/linuxbridge_agent.ini"
QEMU_CONFIG_PATH = "/etc/libvirt/qemu.conf"

NOVA_COMPUTE_CONF = """\
[DEFAULT]
compute_driver = libvirt.LibvirtDriver
state_path = /var/lib/nova
my_ip = {address}
transport_url = {transport_url}
force_config_drive = true
vif_plugging_is_fatal = false
vif_plugging_timeout = 0
force_raw_images = false

[libvirt]
virt_type = qemu
cpu_mode = none

""" + COMMON_SECTIONS + """
{placement}
{neutron}"""

AGENT_CONF = """\
[DEFAULT]
transport_url = {transport_url}

# Debian's sudoers lets the neutron user run neutron-rootwrap only, not sudo alone
[agent]
report_interval = 10
root_helper = sudo /usr/bin/neutron-rootwrap /etc/neutron/rootwrap.conf

[privsep]
helper_command = sudo /usr/bin/neutron-rootwrap /etc/neutron/rootwrap.conf privsep-helper

[experimental]
linuxbridge = true

[linux_bridge]
physical_interface_mappings = {physical}:{interface}

[vxlan]
enable_vxlan = false

[securitygroup]
firewall_driver = noop
enable_security_group = false
"""

# libvirt's QEMU driver in an LXC container: no AppArmor profiles or cgroups of its own
# for each guest (the container's are in force), and QEMU runs as root.
QEMU_CONF = """\
security_driver = "none"
cgroup_controllers = [ ]
user = "root"
group = "root"
"""


def configure(ctx: Context) -> None:
    user, password = compute_user(ctx.address), ctx.passwords["compute"]
    controller = ctx.database_server
    with ctx.step("nova-compute-qemu: message queue account", user):
        rabbitmq.ensure_user(controller, user, password)
    catalogue = Catalogue(ctx.outputs["auth_url"], ctx.passwords["admin"])
    with ctx.step("nova-compute-qemu: register in keystone", user):
        catalogue.service_user(user, password)
    transport = rabbitmq.transport_url(user, password, ctx.database_host)
    interface = _interface(ctx)
    with ctx.step("nova-compute-qemu: libvirt", "virt_type qemu"):
        ctx.server.ssh.put_file(QEMU_CONF, QEMU_CONFIG_PATH)
        # libvirt opens /dev/net/tun for each guest's tap; LXC allows it but makes no node
        ctx.run("[ -c /dev/net/tun ] || { mkdir -p /dev/net && mknod /dev/net/tun c 10 200; }")
        restart(ctx, "libvirtd")
    with ctx.step("nova-compute-qemu: linux bridge agent",
                  f"{PHYSICAL_NETWORK} on {interface}"):
        write_config(ctx, AGENT_CONFIG_PATH, AGENT_CONF.format(
            transport_url=transport, physical=PHYSICAL_NETWORK, interface=interface),
            "neutron")
        restart(ctx, "neutron-linuxbridge-agent")
    with ctx.step("nova-compute-qemu: configuration", "libvirt, config drive"):
        text = NOVA_COMPUTE_CONF.format(
            address=ctx.address, transport_url=transport,
            placement=credentials(ctx, "placement", user, password),
            neutron=credentials(ctx, "neutron", user, password))
        write_config(ctx, CONFIG_PATH, text, "nova")
    host = ctx.run("hostname").strip()
    with ctx.step("nova-compute-qemu: start", host):
        restart(ctx, "nova-compute")
    with ctx.step("nova-compute-qemu: up and in Placement", host):
        join(catalogue, ctx.region, [host])
    map_own(ctx, host)
    ctx.outputs["compute_hosts"] = [host]


def _interface(ctx: Context) -> str:
    """The interface that carries the server's address; once the agent has moved that
    address onto its bridge (a re-run), the bridge's port that is not a guest's tap."""
    found = ctx.run(["ip", "-o", "-4", "addr", "show", "to", ctx.address]).split()
    if len(found) < 2:
        raise BenchbedError(f"{ctx.address}: no interface of this server has that address")
    name = found[1]
    if not name.startswith("brq"):
        return name
    ports = ctx.run(["ls", f"/sys/class/net/{name}/brif"]).split()
    return next(port for port in ports if not port.startswith("tap"))


RECIPE = Recipe(
    name="nova-compute-qemu",
    packages=("nova-compute", "nova-compute-qemu", "neutron-linuxbridge-agent", "genisoimage"),
    preseed=(*NOVA_PRESEED, *NEUTRON_PRESEED),
    paths=("/etc/nova", "/var/lib/nova", "/var/log/nova", "/etc/neutron", "/var/lib/neutron",
           "/var/log/neutron", "/etc/libvirt", "/var/lib/libvirt", "/var/log/libvirt"),
    services=("nova-compute", "neutron-linuxbridge-agent", "libvirtd"),
    configure=configure,
)
