"""Virsh templates: a Debian guest built with debootstrap, kept in libvirt's pool `benchbed`.

A template is four volumes of that pool: NAME.qcow2 (the root filesystem, ext4 without a
partition table, packed with `mkfs.ext4 -d`), NAME.vmlinuz and NAME.initrd (for direct
kernel boot: no bootloader to emulate) and NAME.json (what was built). Servers boot qcow2
overlays on NAME.qcow2; a script baked into the template reads the deployment's key, user
and apt proxy from the kernel command line at boot and makes a fresh SSH host key, so a
clone needs no second disk and no tool that writes into images.
"""

import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from benchbed import local
from benchbed.errors import BenchbedError, InputError, NotFoundError
from benchbed.server import script_text

POOL = "benchbed"
# template names become volume, host and file names
TEMPLATE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
POOL_PATH = Path("/var/lib/benchbed/images")
BUILD_PATH = Path("/var/lib/benchbed/build")
DEFAULT_URI = "qemu:///system"
DISK_SIZE = "8G"
SOURCES_DIR = Path("/etc/apt/sources.list.d")
PACKAGES = ["systemd-sysv", "udev", "openssh-server", "linux-image-amd64", "initramfs-tools",
            "iproute2", "python3", "ca-certificates"]
# timers that would take apt's lock under an engine, and boot work a clone does not need
MASKED_UNITS = ["apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer",
                "e2scrub_reap.service", "fstrim.timer", "getty-static.service",
                "systemd-networkd-wait-online.service"]

SEED_UNIT = """\
[Unit]
Description=benchbed: login key, host key and apt proxy for this clone
Before=ssh.service
After=local-fs.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/benchbed-seed
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
"""

NETWORK_UNIT = """\
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
"""

SSHD_CONFIG = """\
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
UseDNS no
"""


@dataclass
class Template:
    """Where a template's volumes are, as the libvirt host sees them."""

    name: str
    disk: str
    kernel: str
    initrd: str
    release: str
    capacity: int


def _quiet(_context: object, _error: object) -> None:
    """libvirt prints every error to stderr by default; ours carry them in exceptions."""


def connect(uri: str) -> Any:
    """Open a libvirt connection, or fail with one line that names the URI."""
    try:
        import libvirt
    except ImportError:
        raise BenchbedError("libvirt-python is not installed (pip install 'benchbed[libvirt]')"
                            ) from None
    libvirt.registerErrorHandler(_quiet, None)
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as error:
        raise BenchbedError(f"cannot reach libvirt at {uri}: "
                            f"{error.get_error_message()}") from None


def ensure_pool(conn: Any) -> Any:
    """benchbed's own directory pool, defined and started on first use."""
    import libvirt

    try:
        pool = conn.storagePoolLookupByName(POOL)
    except libvirt.libvirtError:
        POOL_PATH.mkdir(parents=True, exist_ok=True)
        xml = (f"<pool type='dir'><name>{POOL}</name>"
               f"<target><path>{POOL_PATH}</path></target></pool>")
        pool = conn.storagePoolDefineXML(xml, 0)
        pool.setAutostart(1)
    if not pool.isActive():
        pool.create(0)
    pool.refresh(0)
    return pool


def find_template(conn: Any, name: str) -> Template:
    """The template called `name`, or NotFoundError naming the ones there are."""
    pool = ensure_pool(conn)
    volumes = set(pool.listVolumes())
    if not {f"{name}.{suffix}" for suffix in ("qcow2", "vmlinuz", "initrd", "json")} <= volumes:
        known = sorted(v[:-5] for v in volumes if v.endswith(".json"))
        raise NotFoundError(f"virsh template '{name}' does not exist (known: "
                            f"{', '.join(known) or 'none'}; build it with: benchbed image "
                            f"build --provider virsh --name {name})")
    paths = {suffix: pool.storageVolLookupByName(f"{name}.{suffix}").path()
             for suffix in ("qcow2", "vmlinuz", "initrd")}
    meta = json.loads(Path(pool.storageVolLookupByName(f"{name}.json").path()).read_text())
    capacity = pool.storageVolLookupByName(f"{name}.qcow2").info()[1]
    return Template(name, paths["qcow2"], paths["vmlinuz"], paths["initrd"], meta["release"],
                    capacity)


def mirrors(release: str) -> tuple[str, str | None]:
    """The host's own Debian mirror and security mirror URIs, read from its apt sources."""
    main = security = None
    for path in sorted(SOURCES_DIR.glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(line.split(":", 1) for line in stanza.splitlines()
                          if ":" in line and not line.startswith(("#", " ")))
            fields = {key.strip(): value.strip() for key, value in fields.items()}
            if fields.get("Enabled", "yes") == "no" or "deb" not in fields.get("Types", ""):
                continue
            suites, uris = fields.get("Suites", "").split(), fields.get("URIs", "").split()
            if uris and release in suites and main is None:
                main = uris[0]
            if uris and f"{release}-security" in suites and security is None:
                security = uris[0]
    if main is None:
        raise InputError(f"no apt source for Debian '{release}' in {SOURCES_DIR}/*.sources")
    return main, security


class VirshImageStore:
    """Builds, lists and deletes virsh templates (`benchbed image ... --provider virsh`)."""

    def __init__(self, uri: str | None = None) -> None:
        self.uri = uri or os.environ.get("BENCHBED_VIRSH_URI", DEFAULT_URI)

    def build(self, name: str | None, release: str, rebuild: bool) -> dict[str, Any]:
        name = name or f"debian-{release}"
        if not TEMPLATE_NAME.fullmatch(name):
            raise InputError(f"template name {name!r}: 1 to 63 ASCII letters, digits, '-' "
                             f"and '_', starting with a letter or digit")
        if os.geteuid() != 0:
            raise InputError("building a virsh template needs root (debootstrap)")
        if not self.uri.startswith("qemu:///"):
            raise InputError(f"virsh templates are built on this machine: {self.uri} is remote")
        conn = connect(self.uri)
        pool = ensure_pool(conn)
        with _build_lock(name):
            pool.refresh(0)
            if f"{name}.json" in pool.listVolumes():
                if not rebuild:
                    return self._describe(pool, name)
                self.delete(name)
            main, security = mirrors(release)
            BUILD_PATH.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=BUILD_PATH))
            try:
                self._build(work, name, release, main, security)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            pool.refresh(0)
            return self._describe(pool, name)

    def _build(self, work: Path, name: str, release: str, main: str,
               security: str | None) -> None:
        rootfs = work / "rootfs"
        local.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
                   release, str(rootfs), main], timeout=1800)
        _configure(rootfs, name, release, main, security)
        kernel = sorted((rootfs / "boot").glob("vmlinuz-*"))[-1]
        initrd = sorted((rootfs / "boot").glob("initrd.img-*"))[-1]
        shutil.copyfile(kernel, work / "vmlinuz")
        shutil.copyfile(initrd, work / "initrd")
        local.run(["mkfs.ext4", "-q", "-L", "bbroot", "-d", str(rootfs), str(work / "disk.raw"),
                   DISK_SIZE], timeout=600)
        local.run(["qemu-img", "convert", "-O", "qcow2", str(work / "disk.raw"),
                   str(work / "disk.qcow2")], timeout=600)
        meta = {"name": name, "release": release, "kernel": kernel.name[len("vmlinuz-"):],
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (work / "meta.json").write_text(json.dumps(meta) + "\n")
        for source, suffix in (("disk.qcow2", "qcow2"), ("vmlinuz", "vmlinuz"),
                               ("initrd", "initrd"), ("meta.json", "json")):
            target = POOL_PATH / f"{name}.{suffix}"
            shutil.move(work / source, target)
            target.chmod(0o644)

    def _describe(self, pool: Any, name: str) -> dict[str, Any]:
        meta = json.loads(Path(pool.storageVolLookupByName(f"{name}.json").path()).read_text())
        disk = pool.storageVolLookupByName(f"{name}.qcow2")
        used = disk.info()[2]
        return {"name": name, "release": meta["release"], "size": f"{used / 2**20:.0f} MiB",
                "created_at": meta["created_at"], "location": f"{self.uri} pool {POOL}: "
                f"{name}.qcow2", "kernel": meta["kernel"]}

    def list(self) -> list[dict[str, Any]]:
        pool = ensure_pool(connect(self.uri))
        names = sorted(v[:-5] for v in pool.listVolumes() if v.endswith(".json"))
        return [self._describe(pool, name) for name in names]

    def delete(self, name: str) -> None:
        conn = connect(self.uri)
        pool = ensure_pool(conn)
        template = find_template(conn, name)
        users = [v for v in pool.listVolumes() if _backing(pool, v) == template.disk]
        if users:
            raise InputError(f"virsh template '{name}' is in use by {', '.join(users)}")
        for suffix in ("json", "qcow2", "vmlinuz", "initrd"):
            pool.storageVolLookupByName(f"{name}.{suffix}").delete(0)


def _backing(pool: Any, volume: str) -> str | None:
    """The backing file of a pool volume (overlays name their template here).

    A volume deleted since the pool was listed backs nothing; any other libvirt error
    propagates: taken for "no", it would let `image delete` remove a template in use.
    """
    import libvirt

    try:
        xml = ElementTree.fromstring(pool.storageVolLookupByName(volume).XMLDesc(0))
    except libvirt.libvirtError as error:
        if error.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return None
        raise BenchbedError(f"virsh: cannot tell what volume {volume} is backed by: "
                            f"{error.get_error_message()}") from None
    return xml.findtext("backingStore/path")


@contextmanager
def _build_lock(name: str) -> Iterator[None]:
    """One build per template name at a time (the tests and the benchmark may race)."""
    BUILD_PATH.mkdir(parents=True, exist_ok=True)
    with open(BUILD_PATH / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _configure(rootfs: Path, name: str, release: str, main: str,
               security: str | None) -> None:
    """Make the debootstrapped tree a template: no identity of its own, a seed at boot."""
    etc = rootfs / "etc"
    (etc / "hostname").write_text(f"{name}\n")
    (etc / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {name}\n")
    (etc / "fstab").write_text("LABEL=bbroot / ext4 errors=remount-ro,noatime 0 1\n")
    (etc / "machine-id").write_text("")
    (rootfs / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    sources = f"deb {main} {release} main\ndeb {main} {release}-updates main\n"
    if security:
        sources += f"deb {security} {release}-security main\n"
    (etc / "apt/sources.list").write_text(sources)
    for key in (etc / "ssh").glob("ssh_host_*"):
        key.unlink()
    (etc / "ssh/sshd_config.d/benchbed.conf").write_text(SSHD_CONFIG)
    seed = rootfs / "usr/local/sbin/benchbed-seed"
    seed.write_text(script_text("virsh/seed.sh"))
    seed.chmod(0o755)
    (etc / "systemd/system/benchbed-seed.service").write_text(SEED_UNIT)
    (etc / "systemd/network/10-benchbed.network").write_text(NETWORK_UNIT)
    (etc / "initramfs-tools/conf.d/benchbed").write_text("MODULES=list\n")
    (etc / "initramfs-tools/modules").write_text("virtio_pci\nvirtio_blk\next4\n")
    chroot = ["chroot", str(rootfs)]
    local.run([*chroot, "systemctl", "enable", "benchbed-seed.service",
               "systemd-networkd.service"])
    local.run([*chroot, "systemctl", "mask", *MASKED_UNITS])
    local.run([*chroot, "update-initramfs", "-u", "-k", "all"], timeout=600)
    local.run([*chroot, "apt-get", "clean"])
