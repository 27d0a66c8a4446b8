"""VirshProvider: libvirt virtual machines as servers, each a qcow2 overlay on a template.

VMs sit on the host network of benchbed.hostnet (a bridge with dnsmasq DHCP and an apt
proxy, no route out, no NAT), shared by the deployments on one network and removed by the
last of them; their addresses come from its DHCP leases. VMs boot the template's kernel
directly; their login key, user, machine-id and apt proxy travel on the kernel command
line, which the template's seed script reads (see benchbed.images.virsh).

A libvirt host of its own (`connection: USER@HOST`) is reached over SSH twice: benchbed's
own (paramiko) for its host network, and libvirt's libssh2 transport, given the key and the
host key benchbed recorded (no other is accepted). The template is copied there from this
machine's pool on first use, its base first for a snapshot (benchbed.images.virsh), and the
VMs, on that host's own bridge, are reached through an SSH jump over the host.

`save_images` turns each VM into a snapshot template (`benchbed image save`), in the ledger
until it is complete; an `image` that names one boots overlays on it like on any template.
"""

import base64
import ipaddress
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from benchbed import host_keys, hostcheck, hostnet, paths, sizes
from benchbed.errors import ConfigError, InputError, NotFoundError
from benchbed.hostnet import PROXY_PATTERN, HostNetwork, bridge_name
from benchbed.hostnet.bridge import STATE_DIR
from benchbed.hostnet.routes import on_link_here
from benchbed.images import virsh as images
from benchbed.images.virsh import POOL, Template, connect, ensure_pool
from benchbed.keys import deployment_key
from benchbed.ledger import CREATED, Resource
from benchbed.networks import Claim, guest_network
from benchbed.parallel import run_parallel
from benchbed.plugin import ResourceKind, join_path
from benchbed.providers.base import ServerProvider
from benchbed.retry import wait_for
from benchbed.server import Server
from benchbed.settings import PluginConfig, setting

DEFAULT_SIZE = "small"
BOOT_TIMEOUT = 300
LOCAL_HOSTS = (None, "", "localhost", "127.0.0.1")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
# the keys OpenSSH tries first, for a remote libvirt host when `key` is not given
DEFAULT_KEYS = tuple(Path.home() / ".ssh" / name for name in ("id_ed25519", "id_ecdsa", "id_rsa"))


def _quoted(value: str) -> str:
    return escape(value, {"'": "&apos;"})


@dataclass(frozen=True, kw_only=True)
class VirshProviderConfig(PluginConfig):
    uri: str | None = setting(
        "The libvirt URI (qemu:///system when neither it nor connection is given).", None,
        pattern=r"^qemu(\+ssh|\+tcp|\+tls)?://([A-Za-z0-9._-]+@)?[A-Za-z0-9.:_-]*"
                r"/(system|session)(\?[A-Za-z0-9_=&]*)?$")
    connection: str | None = setting(
        "USER@HOST of a libvirt host reached over SSH (instead of uri).", None,
        pattern=r"^[A-Za-z0-9._-]+@[A-Za-z0-9.:_-]+$")
    key: str | None = setting(
        "The private key that logs in to the libvirt host of connection or of a remote uri "
        "(a file on this machine, or the key itself); by default ~/.ssh/id_ed25519, "
        "id_ecdsa or id_rsa, the first there is.", None, minLength=1)
    apt_upstream_proxy: str | None = setting(
        "The HTTP proxy (http://host:port) the host network's apt proxy fetches Debian's "
        "packages through, for a libvirt host without a way out of its own.", None,
        pattern=PROXY_PATTERN)
    template_name: str = setting("The template (or saved image) the VMs' disks are overlays "
                                 "on.", "debian-bookworm", pattern=NAME_PATTERN)
    template_user: str = setting("The user engines log in as on the VMs.", "root",
                                 pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    template_password: str | None = setting("That user's password, if the template has one.",
                                            None, secret=True)
    domain_type: Literal["auto", "kvm", "qemu"] = setting(
        "kvm, qemu (software emulation), or auto: kvm where the host CPU has hardware "
        "virtualization.", "auto")
    network: str = setting("The IPv4 network (CIDR, at least a /28) of the host bridge the "
                           "VMs are on.", "10.231.0.0/24")
    amount: int = setting("How many VMs to make when the engine does not say.", 1,
                          minimum=1, maximum=64)
    domain_name_prefix: str = setting("The first part of the VMs' names.", "bbvirsh",
                                      pattern="^[a-z][a-z0-9-]{0,23}$")

    @property
    def ipv4_network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.network)

    @property
    def libvirt_uri(self) -> str:
        """The URI libvirt is reached at: uri, or connection's host over SSH."""
        if self.uri is not None:
            return self.uri
        if self.connection is not None:
            return f"qemu+ssh://{self.connection}/system?no_tty=1"
        return "qemu:///system"

    @property
    def is_local(self) -> bool:
        """Whether libvirt runs on this machine."""
        return urlsplit(self.libvirt_uri).hostname in LOCAL_HOSTS

    @property
    def host_key(self) -> str | None:
        """The key that logs in to a remote libvirt host: `key`, or the user's default."""
        if self.key is not None or self.is_local:
            return self.key
        return next((str(path) for path in DEFAULT_KEYS if path.exists()), None)


class VirshProvider(ServerProvider[VirshProviderConfig]):
    """libvirt VMs (KVM where it works, else emulation) on an isolated host network."""

    EXAMPLE = {"type": "VirshProvider"}
    EXTRAS = {"libvirt": "libvirt"}

    Config = VirshProviderConfig

    @classmethod
    def validate_config(cls, config: VirshProviderConfig, path: str, *,
                        has_parent: bool = False) -> None:
        if config.connection is not None and config.uri is not None:
            raise ConfigError(join_path(path, "uri"), "give either uri or connection")
        if config.is_local and config.key is not None:
            raise ConfigError(join_path(path, "key"), "only for a remote libvirt host "
                              "(connection, or a remote uri)")
        where = join_path(path, "network")
        guest_network(config.network, where, smallest=28)

    @classmethod
    def host_requirements(cls, config: VirshProviderConfig | None
                          ) -> list[hostcheck.HostCheck]:
        """The libvirt bindings always; the rest only when libvirt runs on this machine."""
        checks = [hostcheck.python_module("libvirt", "libvirt")]
        if config is not None and not config.is_local:
            key = config.host_key or str(DEFAULT_KEYS[0])
            if "PRIVATE KEY" not in key:
                checks.append(hostcheck.readable_file(key, "set key: the private key that "
                                                      "logs in to the libvirt host"))
            return checks
        checks += [hostcheck.command("virsh", "libvirt-clients"),
                   hostcheck.command("libvirtd", "libvirt-daemon-system"),
                   hostcheck.command("qemu-img", "qemu-utils"),
                   hostcheck.command("qemu-system-x86_64", "qemu-system-x86"),
                   hostcheck.command("mkfs.ext4", "e2fsprogs"),
                   hostcheck.command("debootstrap", "debootstrap"),
                   hostcheck.daemon("libvirtd"), hostcheck.daemon("virtlogd")]
        if config is not None and config.domain_type == "kvm":
            checks.append(hostcheck.device("/dev/kvm", "give the kvm group access (chgrp kvm "
                                           "/dev/kvm; chmod 660 /dev/kvm), or domain_type: auto"))
        network = None if config is None else config.ipv4_network
        return checks + hostnet.host_requirements(network, "network")

    @classmethod
    def local_networks(cls, config: VirshProviderConfig, path: str) -> Iterator[Claim]:
        """The host network, when libvirt runs on this machine (VMs of any deployment on
        that network share its bridge)."""
        if config.is_local:
            network = config.ipv4_network
            yield Claim(join_path(path, "network"), network, shared=True,
                        bridge=bridge_name(network))

    def default_amount(self) -> int:
        return self.config.amount

    _uri: str | None = None

    @property
    def uri(self) -> str:
        """The URI libvirt is opened with: for `connection`, libssh2 with benchbed's key and
        the host key benchbed recorded on its own first contact (known_hosts_verify=normal:
        libvirt refuses any other)."""
        if self.config.connection is None:
            return self.config.libvirt_uri
        if self._uri is None:
            host = self._host()
            host.ssh.run(["true"], timeout=60)  # records its host key, or refuses a changed one
            directory = self.deployment.directory
            known = [line for line in host_keys.known_hosts_lines(self.deployment)
                     if line.split()[0] in (host.host, f"[{host.host}]:{host.port}")]
            known_hosts = directory / "libvirt_known_hosts"
            paths.write_private(known_hosts, "\n".join(known) + "\n")
            keyfile = host.key or ""
            if "PRIVATE KEY" in keyfile:
                paths.write_private(directory / "libvirt_key", keyfile)
                keyfile = str(directory / "libvirt_key")
            query = urlencode({"keyfile": keyfile, "known_hosts": str(known_hosts),
                               "known_hosts_verify": "normal", "sshauth": "privkey"})
            self._uri = f"qemu+libssh2://{host.user}@{host.host}/system?{query}"
        return self._uri

    def _host(self) -> Server:
        """The libvirt host, driven directly when local and over SSH when the URI is remote."""
        parts = urlsplit(self.config.libvirt_uri)
        if parts.hostname in LOCAL_HOSTS:
            return Server(host="localhost", deployment=self.deployment)
        return Server(host=parts.hostname, port=22, user=parts.username or "root",
                      key=self.config.host_key, deployment=self.deployment)

    _connection: Any = None

    @property
    def _conn(self) -> Any:
        """One libvirt connection per provider, opened on first use (libvirt is thread-safe)."""
        if self._connection is None:
            self._connection = connect(self.uri)
        return self._connection

    def create_servers(self, image_uuid: str | None = None, type_id: str | None = None,
                       amount: int = 1) -> list[Server]:
        size = type_id or DEFAULT_SIZE
        vcpus, memory = sizes.lookup(size)
        if amount < 1:
            raise InputError(f"VirshProvider: amount must be at least 1, got {amount}")
        pool = ensure_pool(self._conn)
        template = self._template(pool, image_uuid or self.config.template_name)
        host_memory = self._conn.getInfo()[1]
        if memory * amount > host_memory:
            raise InputError(f"VirshProvider: {amount} x {size} needs {memory * amount} MiB, "
                             f"more than the host's {host_memory} MiB")
        domain_type, reason = choose_domain_type(self._conn, self.config.domain_type, self.uri)
        with self.deployment.step("domain type", f"{domain_type}: {reason}"):
            self.deployment.logger.info("virsh: domain type %s (%s)", domain_type, reason)
        network = self._ensure_network()
        first = len(self.ledger.resources("domain"))
        prefix = self.config.domain_name_prefix
        names = [f"{prefix}-{self.tag}-{first + index}" for index in range(amount)]
        run_parallel("creating overlay volumes", names,
                     lambda name: self._create_volume(pool, name, template))
        facts = {"domain_type": domain_type, "domain_type_reason": reason, "size": size,
                 "vcpus": vcpus, "memory_mib": memory, "template": template.name}
        _, public_key = deployment_key(self.deployment)
        cmdline = {"bb.user": self.config.template_user,
                   "bb.key": base64.b64encode(public_key.encode()).decode(),
                   "bb.apt_proxy": network.apt_proxy}
        return run_parallel("starting VMs", names,
                            lambda name: self._boot(name, template, facts, cmdline, network),
                            describe=str)

    def _template(self, pool: Any, name: str) -> Template:
        """Template `name` in the libvirt host's pool (as ensure_pool left it); on a remote
        host, copied there from this machine's pool where it is missing (its base first, for
        a snapshot)."""
        try:
            return images.template_in(pool, name)
        except NotFoundError:
            if self.config.is_local:
                raise
        where = self._host().host
        here = ensure_pool(connect(images.DEFAULT_URI))
        if not images.is_complete(here, name):
            raise NotFoundError(
                f"virsh template '{name}' is neither on {where} nor on this machine (build "
                f"it here, and it is copied to {where} on first use: benchbed image build "
                f"--provider virsh --name {name})")
        for layer in images.layers(here, name):
            if not images.is_complete(pool, layer):
                self._copy_template(here, pool, layer, where)
        return images.template_in(pool, name)

    def _copy_template(self, here: Any, pool: Any, name: str, where: str) -> None:
        """One template copy, in the ledger until it is complete: a copy killed halfway
        is removed by destroy (it belongs to the pool once complete)."""
        resource = self.ledger.record("template", name, uri=self.config.libvirt_uri)
        try:
            with self.deployment.step("copy virsh template", f"{name} to {where}"):
                images.copy_template(here, pool, name, self._owner(resource))
        except BaseException:
            self._discard_copy(resource)
            self.ledger.forget(resource)
            raise
        self.ledger.forget(resource)

    def _discard_copy(self, resource: Resource) -> None:
        images.VirshImageStore(self.uri).discard(resource.name, self._owner(resource))

    def _ensure_network(self) -> HostNetwork:
        """Take this deployment's reference on the shared host network (once)."""
        host = self._host()
        network = HostNetwork(host, self.config.ipv4_network,
                              self.config.apt_upstream_proxy or "")
        if any(r.state == "created" for r in self.ledger.resources("hostnet")):
            return network
        network.check_free()
        with self.ledger.creating("hostnet", f"{network.bridge}@{host.host}",
                                  network=str(network.network), host=host.to_dict()), \
                self.deployment.step("acquire network", network.bridge):
            network.acquire(self.holder)
        return network

    def _create_volume(self, pool: Any, name: str, template: Template) -> None:
        volume = f"{name}.qcow2"
        with self.ledger.creating("volume", volume, pool=POOL), \
                self.deployment.step("create overlay volume", f"{volume} on {template.name}",
                                     lane=name):
            pool.createXML(_volume_xml(volume, template), 0)

    def _boot(self, name: str, template: Template, facts: dict[str, Any],
              cmdline: dict[str, str], network: HostNetwork) -> Server:
        vcpus, memory = facts["vcpus"], facts["memory_mib"]
        mac = "52:54:00:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))
        kernel_args = {**cmdline, "systemd.machine_id": uuid.uuid4().hex,
                       "systemd.hostname": name}
        xml = _domain_xml(name, facts["domain_type"], vcpus, memory, template,
                          " ".join(f"{k}={v}" for k, v in kernel_args.items()),
                          network.bridge, mac)
        with self.ledger.creating("domain", name, domain_type=facts["domain_type"],
                                  mac=mac) as resource, \
                self.deployment.step("define and start domain",
                                     f"{name} ({facts['domain_type']}, {facts['size']})",
                                     lane=name):
            self._conn.defineXML(xml).create()
        leases = f"{STATE_DIR}/{network.bridge}/dnsmasq.leases"

        def leased() -> str | None:
            listed = network.host.ssh.run(["cat", leases], check=False, timeout=30).stdout
            for line in listed.splitlines():
                fields = line.split()
                if len(fields) > 2 and fields[1].lower() == mac:
                    return fields[2]
            return None

        with self.deployment.step("DHCP lease", name, lane=name):
            address = wait_for(leased, timeout=BOOT_TIMEOUT, what=f"a DHCP lease for {name}",
                               interval=0.5)
        resource.data.update(address=address, ssh_address=f"{address}:22")
        self.ledger.update(resource)
        key_path, _ = deployment_key(self.deployment)
        direct = network.host.is_local or on_link_here(address)
        server = Server(host=address, user=cmdline["bb.user"], key=str(key_path),
                        password=self.config.template_password, name=name,
                        facts=dict(facts), jump=None if direct else network.host.to_dict(),
                        deployment=self.deployment)
        with self.deployment.step("SSH ready", f"{name} {address}", lane=name):
            server.ssh.wait_ready(timeout=BOOT_TIMEOUT)
        return server

    def save_images(self, name: str, origin: dict[str, Any]) -> list[dict[str, Any]]:
        """Snapshot every VM (`name`, or `name-0`, `name-1`, ... for several); a save that
        was killed before is discarded first."""
        store = images.VirshImageStore(self.uri)
        for leftover in self.ledger.resources("image"):
            self._discard_image(leftover)
            self.ledger.forget(leftover)
        domains = [row for row in reversed(self.ledger.resources("domain"))
                   if row.state == CREATED]
        names = [name] if len(domains) == 1 else \
            [f"{name}-{index}" for index in range(len(domains))]
        for image in names:
            store.check_new(image)
        return run_parallel("saving VM images", list(zip(names, domains, strict=True)),
                            lambda pair: self._save_image(store, *pair, origin),
                            describe=lambda pair: pair[0])

    def _save_image(self, store: images.VirshImageStore, name: str, domain: Resource,
                    origin: dict[str, Any]) -> dict[str, Any]:
        resource = self.ledger.record("image", name, domain=domain.name)
        marker = {"origin": {**origin, "provider": self.path or "(root)",
                             "domain": domain.name}}
        try:
            with self.deployment.step("save image", f"{domain.name} as {name}",
                                      lane=domain.name):
                saved = store.save(name, f"{domain.name}.qcow2", self._paused(domain), marker,
                                   owner=self._owner(resource),
                                   user=self.config.template_user)
        except BaseException:
            self._discard_image(resource)
            self.ledger.forget(resource)
            raise
        self.ledger.forget(resource)
        return saved

    @contextmanager
    def _paused(self, domain: Resource) -> Iterator[None]:
        """The VM held still: its guest's writes on the disk (`sync`), then its CPUs paused.

        What was written before the save is in the copy; what a service had in memory is
        recovered from as after a power cut (its journal), as with LXC's freeze.
        """
        if "address" not in domain.data:
            raise InputError(f"VirshProvider: domain {domain.name} has no recorded address "
                             f"(made by an older benchbed): re-create the deployment")
        key_path, _ = deployment_key(self.deployment)
        server = Server(host=domain.data["address"],
                        user=self.config.template_user, key=str(key_path),
                        password=self.config.template_password, name=domain.name,
                        deployment=self.deployment)
        try:
            with self.deployment.step("sync guest disks", domain.name, lane=domain.name):
                server.ssh.run(["sync"], timeout=BOOT_TIMEOUT)
        finally:
            server.close()
        running = self._conn.lookupByName(domain.name)
        with self.deployment.step("pause domain", domain.name, lane=domain.name):
            running.suspend()
        try:
            yield
        finally:
            with self.deployment.step("resume domain", domain.name, lane=domain.name):
                running.resume()

    def _discard_image(self, resource: Resource) -> None:
        """Undo a save that did not finish: its VM runs again, its half-made volumes go."""
        import libvirt

        domain = resource.data.get("domain")
        if domain:
            def resume() -> None:
                running = self._conn.lookupByName(domain)
                if running.info()[0] == libvirt.VIR_DOMAIN_PAUSED:
                    running.resume()
            _ignoring_gone(resume)
        images.VirshImageStore(self.uri).discard(resource.name, self._owner(resource))

    def _owner(self, resource: Resource) -> str:
        """Which save a half-made snapshot belongs to: its ledger row."""
        return f"{self.deployment.uuid}/{resource.id}"

    def _release_network(self, resource: Resource) -> None:
        host = Server.from_dict(resource.data["host"], deployment=self.deployment)
        HostNetwork(host, ipaddress.IPv4Network(resource.data["network"])).release(self.holder)

    def _delete_domain(self, resource: Resource) -> None:
        """Destroy (pull the plug: the guest may ignore ACPI) and undefine."""
        name = resource.name
        _ignoring_gone(lambda: self._conn.lookupByName(name).destroy())
        _ignoring_gone(lambda: self._conn.lookupByName(name).undefine())

    def _delete_volume(self, resource: Resource) -> None:
        pool = ensure_pool(self._conn)
        _ignoring_gone(lambda: pool.storageVolLookupByName(resource.name).delete(0))

    RESOURCES = {
        "hostnet": ResourceKind(delete=_release_network),
        "volume": ResourceKind(delete=_delete_volume),
        "domain": ResourceKind(delete=_delete_domain, requires=("volume", "hostnet")),
        # a snapshot being saved; once complete it belongs to the image store, not to us
        "image": ResourceKind(delete=_discard_image),
        # a template being copied to a remote libvirt host; the same once complete
        "template": ResourceKind(delete=_discard_copy),
    }


def _ignoring_gone(step: Any) -> None:
    """Run one libvirt call; "no such domain/volume" or "not running" means it is done."""
    import libvirt

    gone = {libvirt.VIR_ERR_NO_DOMAIN,
            libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_OPERATION_INVALID}
    try:
        step()
    except libvirt.libvirtError as error:
        if error.get_error_code() not in gone:
            raise


def choose_domain_type(conn: Any, wanted: str, uri: str) -> tuple[str, str]:
    """Pick kvm or qemu (emulation), with the reason, from what the libvirt host reports.

    A host KVM can run ordinary guests on only if its CPU has hardware virtualization
    (vmx or svm). A paravirtual KVM (PVM) gives /dev/kvm without it, and guests hang
    there, so `auto` takes emulation unless libvirt offers kvm *and* the CPU has vmx/svm.
    """
    capabilities = ElementTree.fromstring(conn.getCapabilities())
    offers_kvm = any(domain.get("type") == "kvm"
                     for domain in capabilities.iter("domain"))
    features = {f.get("name", "") for f in capabilities.iterfind("host/cpu/feature")}
    hardware = features & {"vmx", "svm"}
    if wanted == "qemu":
        return "qemu", "configured"
    if wanted == "kvm":
        if not offers_kvm:
            raise InputError(f"VirshProvider: domain_type kvm, but {uri} offers no KVM")
        return "kvm", "configured"
    if not offers_kvm:
        return "qemu", "libvirt offers no KVM here: software emulation"
    if not hardware:
        return "qemu", ("the host CPU has no vmx/svm (a paravirtual /dev/kvm, where ordinary "
                        "guests hang): software emulation")
    return "kvm", f"KVM with hardware virtualization ({', '.join(sorted(hardware))})"


def _volume_xml(name: str, template: Template) -> str:
    return (f"<volume><name>{name}</name><capacity>{template.capacity}</capacity>"
            "<target><format type='qcow2'/></target>"
            f"<backingStore><path>{_quoted(template.disk)}</path><format type='qcow2'/>"
            "</backingStore></volume>")


def _domain_xml(name: str, domain_type: str, vcpus: int, memory: int, template: Template,
                cmdline: str, bridge: str, mac: str) -> str:
    cpu = "<cpu mode='host-passthrough'/>" if domain_type == "kvm" else ""
    return f"""<domain type='{domain_type}'>
  <name>{name}</name>
  <memory unit='MiB'>{memory}</memory>
  <vcpu>{vcpus}</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{_quoted(template.kernel)}</kernel>
    <initrd>{_quoted(template.initrd)}</initrd>
    <cmdline>root=/dev/vda rw console=ttyS0 quiet {_quoted(cmdline)}</cmdline>
  </os>
  <features><acpi/></features>
  {cpu}
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='{POOL}' volume='{name}.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='bridge'>
      <source bridge='{bridge}'/>
      <mac address='{mac}'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <memballoon model='none'/>
  </devices>
</domain>"""

