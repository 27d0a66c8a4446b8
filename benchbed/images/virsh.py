"""Virsh templates: a Debian guest built with debootstrap, kept in libvirt's pool `benchbed`.

A template is four volumes of that pool: NAME.qcow2 (the root filesystem, ext4 without a
partition table, packed with `mkfs.ext4 -d`), NAME.vmlinuz and NAME.initrd (for direct
kernel boot: no bootloader to emulate) and NAME.json (what was built). Servers boot qcow2
overlays on NAME.qcow2; a script baked into the template reads the deployment's key, user
and apt proxy from the kernel command line at boot and makes a fresh SSH host key, so a
clone needs no second disk and no tool that writes into images.

A libvirt host of its own (a remote `connection`) gets its templates from this machine's pool,
streamed through libvirt's own volume upload (`copy_template`): NAME.json is uploaded first
as a half-made marker naming the copy that owns it, then the other volumes, then the complete
marker over it. Markers are padded with spaces to MARKER_SIZE: an upload writes in place and
does not shorten a file, and JSON reads the padding as whitespace.

A snapshot (`benchbed image save`) is a template of the same four volumes whose qcow2 backs
onto the template its VM came from (benchbed.images.virsh_snapshot). Its NAME.json is
written first, saying `"state": "half-made"` and which save owns it, and replaced by the
complete marker (`"kind": "snapshot"`, its base, its origin) last: a save that was killed
is listed as half-made and its deployment's destroy removes it.
"""

import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchbed import local
from benchbed.errors import BenchbedError, InputError, NotFoundError
from benchbed.images import virsh_snapshot as snapshots
from benchbed.retry import retry
from benchbed.server import script_text

POOL = "benchbed"
# template names become volume, host and file names
TEMPLATE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
POOL_PATH = Path("/var/lib/benchbed/images")
BUILD_PATH = Path("/var/lib/benchbed/build")
DEFAULT_URI = "qemu:///system"
DISK_SIZE = "8G"
SUFFIXES = ("qcow2", "vmlinuz", "initrd", "json")
MARKER_SIZE = 64 * 1024
CHUNK = 1024 * 1024
HALF_MADE = "half-made"
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


# libvirt refuses to rescan a pool while another process builds a volume in it, as two
# deployments created at once do: "pool 'benchbed' has asynchronous jobs running"
POOL_BUSY = "asynchronous jobs running"


class _PoolBusy(Exception):
    pass


def refresh_pool(pool: Any) -> None:
    """Rescan the pool, waiting out another process's volume build instead of failing on it."""
    import libvirt

    def attempt() -> None:
        try:
            pool.refresh(0)
        except libvirt.libvirtError as error:
            if POOL_BUSY in (error.get_error_message() or ""):
                raise _PoolBusy(error.get_error_message()) from None
            raise

    try:
        retry(attempt, timeout=120, retry_on=(_PoolBusy,), max_delay=1.0)
    except _PoolBusy as busy:
        raise BenchbedError(f"libvirt pool '{POOL}' stayed busy for 120s: {busy}") from None


def ensure_pool(conn: Any) -> Any:
    """benchbed's own directory pool, defined and started on first use."""
    import libvirt

    try:
        pool = conn.storagePoolLookupByName(POOL)
    except libvirt.libvirtError:
        xml = (f"<pool type='dir'><name>{POOL}</name>"
               f"<target><path>{POOL_PATH}</path></target></pool>")
        pool = conn.storagePoolDefineXML(xml, 0)
        pool.build(0)  # the directory, made by the libvirt host (it may be another machine)
        pool.setAutostart(1)
    if not pool.isActive():
        pool.create(0)
    refresh_pool(pool)
    return pool


def find_template(conn: Any, name: str) -> Template:
    """The template called `name`, or NotFoundError naming the ones there are."""
    return template_in(ensure_pool(conn), name)


def template_in(pool: Any, name: str) -> Template:
    """find_template in a pool as it was last scanned, for callers that scanned it already."""
    meta = _complete_marker(pool, name)
    paths = {suffix: pool.storageVolLookupByName(f"{name}.{suffix}").path()
             for suffix in ("qcow2", "vmlinuz", "initrd")}
    capacity = pool.storageVolLookupByName(f"{name}.qcow2").info()[1]
    return Template(name, paths["qcow2"], paths["vmlinuz"], paths["initrd"], meta["release"],
                    capacity)


def is_complete(pool: Any, name: str) -> bool:
    """Whether image `name` is in the pool as last scanned, whole: what template_in finds."""
    try:
        _complete_marker(pool, name)
    except NotFoundError:
        return False
    return True


def _complete_marker(pool: Any, name: str) -> dict[str, Any]:
    """The marker of image `name` if the image is complete (the marker not half-made, all four
    volumes there: a delete or a copy that was killed leaves fewer), or NotFoundError saying
    why not."""
    volumes = set(pool.listVolumes())
    meta = _meta(pool, name) if f"{name}.json" in volumes else None
    if meta is not None and meta.get("state") == HALF_MADE:
        raise NotFoundError(f"virsh image '{name}' is half-made (a save that did not finish; "
                            f"benchbed image delete --provider virsh {name} removes it)")
    if meta is None or not {f"{name}.{suffix}" for suffix in SUFFIXES} <= volumes:
        known = sorted(v[:-5] for v in volumes if v.endswith(".json"))
        raise NotFoundError(f"virsh template '{name}' does not exist (known: "
                            f"{', '.join(known) or 'none'}; build it with: benchbed image "
                            f"build --provider virsh --name {name})")
    return meta


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

    @property
    def is_local(self) -> bool:
        """Whether the pool is this machine's (builds and saves write into it directly)."""
        return self.uri.startswith("qemu:///")

    def build(self, name: str | None, release: str, rebuild: bool) -> dict[str, Any]:
        name = name or f"debian-{release}"
        if not TEMPLATE_NAME.fullmatch(name):
            raise InputError(f"template name {name!r}: 1 to 63 ASCII letters, digits, '-' "
                             f"and '_', starting with a letter or digit")
        if os.geteuid() != 0:
            raise InputError("building a virsh template needs root (debootstrap)")
        if not self.is_local:
            raise InputError(f"virsh templates are built on this machine: {self.uri} is remote")
        conn = connect(self.uri)
        pool = ensure_pool(conn)
        with _build_lock(name):
            refresh_pool(pool)
            if f"{name}.json" in pool.listVolumes():
                if not rebuild:
                    return self._describe(pool, name)
                self._delete(conn, pool, name)
            main, security = mirrors(release)
            BUILD_PATH.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=BUILD_PATH))
            try:
                self._build(work, name, release, main, security)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            refresh_pool(pool)
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
        meta = _meta(pool, name) or {}
        location = f"{self.uri} pool {POOL}: {name}.qcow2"
        if meta.get("state") == HALF_MADE:
            return {"name": name, "state": HALF_MADE, "created_at": meta.get("created_at", ""),
                    "location": location}
        disk = pool.storageVolLookupByName(f"{name}.qcow2")
        used = disk.info()[2]
        described = {"name": name, "kind": meta.get("kind", "template"),
                     "release": meta["release"], "size": f"{used / 2**20:.0f} MiB",
                     "created_at": meta["created_at"], "location": location,
                     "kernel": meta["kernel"]}
        if meta.get("kind") == "snapshot":
            described.update(base=meta["base"], origin=meta["origin"])
        return described

    def list(self) -> list[dict[str, Any]]:
        pool = ensure_pool(connect(self.uri))
        names = sorted(v[:-5] for v in pool.listVolumes() if v.endswith(".json"))
        return [self._describe(pool, name) for name in names]

    def delete(self, name: str) -> None:
        """Delete a template or snapshot, refused while a domain or a snapshot needs it; a
        half-made snapshot is removed whatever save it was left by."""
        check_name(name)
        conn = connect(self.uri)
        pool = ensure_pool(conn)
        with _build_lock(name):
            self._delete(conn, pool, name)

    def _delete(self, conn: Any, pool: Any, name: str) -> None:
        refresh_pool(pool)
        meta = _meta(pool, name) if f"{name}.json" in pool.listVolumes() else None
        if meta is not None and meta.get("state") == HALF_MADE:
            self._remove(pool, name)
            return
        template = template_in(pool, name)
        users = snapshots.users(conn, pool, template.disk)
        if users:
            raise InputError(f"virsh template '{name}' is in use by {', '.join(users)}")
        self._remove(pool, name)

    # -- snapshots (`benchbed image save`) ----------------------------------------------------

    def check_new(self, name: str) -> None:
        """Refuse, before anything is made, a name that is invalid or taken."""
        check_name(name)
        if not self.is_local:
            raise InputError(f"virsh snapshots are made on this machine: {self.uri} is remote")
        pool = ensure_pool(connect(self.uri))
        taken = [f"{name}.{suffix}" for suffix in SUFFIXES
                 if f"{name}.{suffix}" in pool.listVolumes()]
        if taken:
            raise InputError(f"virsh image '{name}' exists already ({', '.join(taken)} in pool "
                             f"{POOL}; benchbed image delete --provider virsh {name})")

    def save(self, name: str, source: str, paused: "AbstractContextManager[Any]",
             marker: dict[str, Any], owner: str, user: str) -> dict[str, Any]:
        """Make snapshot `name` of the overlay volume `source` (copied inside `paused`, which
        holds its VM still) and return its marker. `owner` names the save in the half-made
        marker, so that only its own discard removes what it left."""
        check_name(name)
        conn = connect(self.uri)
        pool = ensure_pool(conn)
        with _build_lock(name):
            self._claim(pool, name, owner)
            overlay = pool.storageVolLookupByName(source)
            backing = snapshots.backing_of(overlay)
            base = next((v[:-6] for v in pool.listVolumes() if v.endswith(".qcow2")
                         and pool.storageVolLookupByName(v).path() == backing), None)
            if backing is None or base is None:
                raise BenchbedError(f"virsh: {source} does not back onto a template of pool "
                                    f"{POOL} (backing file: {backing})")
            template = find_template(conn, base)
            work = _work_dir(name)
            work.mkdir(parents=True, exist_ok=True)
            try:
                with paused:
                    snapshots.copy_disk(overlay.path(), backing, POOL_PATH / f"{name}.qcow2")
                snapshots.seal(POOL_PATH / f"{name}.qcow2", name, user, work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            for suffix, path in (("vmlinuz", template.kernel), ("initrd", template.initrd)):
                shutil.copyfile(path, POOL_PATH / f"{name}.{suffix}")
                (POOL_PATH / f"{name}.{suffix}").chmod(0o644)
            base_meta = _meta(pool, base) or {}
            complete = {"name": name, "kind": "snapshot", "base": base,
                        "release": template.release, "kernel": base_meta.get("kernel", ""),
                        "created_at": _now(), **marker}
            _write_marker(name, complete)
            refresh_pool(pool)
        return complete

    def discard(self, name: str, owner: str) -> None:
        """Remove what the save `owner` left of snapshot `name` if it is still half-made;
        keep a complete snapshot, and one another save is making."""
        if not TEMPLATE_NAME.fullmatch(name):
            return
        pool = ensure_pool(connect(self.uri))
        with _build_lock(name):
            refresh_pool(pool)
            meta = _meta(pool, name) if f"{name}.json" in pool.listVolumes() else None
            if meta is not None and meta.get("state") == HALF_MADE and \
                    meta.get("owner") == owner:
                self._remove(pool, name)

    def _claim(self, pool: Any, name: str, owner: str) -> None:
        """Take the name with a half-made marker; a second save of that name is refused."""
        refresh_pool(pool)
        if any(f"{name}.{suffix}" in pool.listVolumes() for suffix in SUFFIXES):
            raise InputError(f"virsh image '{name}' exists already")
        temporary = _write_temporary(name, {"name": name, "state": HALF_MADE, "owner": owner,
                                            "created_at": _now()})
        try:
            os.link(temporary, POOL_PATH / f"{name}.json")  # fails if the name was taken
        except FileExistsError:
            raise InputError(f"virsh image '{name}' exists already") from None
        finally:
            temporary.unlink()
        refresh_pool(pool)

    def _remove(self, pool: Any, name: str) -> None:
        """The image's volumes; for a snapshot saved here, its save's export and files."""
        if self.is_local:
            work = _work_dir(name)
            snapshots.stop_export(work / f"{name}.raw", work / f"{name}.pid")
            shutil.rmtree(work, ignore_errors=True)
        _delete_volumes(pool, name)


def check_name(name: str) -> None:
    """Template names become volume, host and file names."""
    if not TEMPLATE_NAME.fullmatch(name):
        raise InputError(f"'{name[:80]}' is not a valid virsh image name (1 to 63 ASCII "
                         f"letters, digits, '-' and '_', starting with a letter or digit)")


def _meta(pool: Any, name: str) -> dict[str, Any] | None:
    """The NAME.json marker, read through libvirt (the pool may be on another machine); None
    if it is gone since the pool was listed. One that cannot be read is taken for half-made:
    `image delete` removes it."""
    import libvirt

    try:
        text = read_volume(pool.storageVolLookupByName(f"{name}.json"))
    except libvirt.libvirtError:
        return None
    try:
        meta = json.loads(text)
    except ValueError:
        meta = None
    return meta if isinstance(meta, dict) else {"name": name, "state": HALF_MADE}


def read_volume(volume: Any) -> bytes:
    """A volume's bytes, downloaded through its libvirt connection."""
    return b"".join(_downloaded(volume))


def _upload(volume: Any, chunks: Iterable[bytes], length: int) -> None:
    """Write `length` bytes from `chunks` over a volume, through its libvirt connection."""
    stream = volume.connect().newStream(0)
    volume.upload(stream, 0, length, 0)
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                view = view[stream.send(bytes(view)):]
    except BaseException:
        stream.abort()
        raise
    stream.finish()


def _downloaded(volume: Any) -> Iterator[bytes]:
    """A volume's bytes in chunks, as its libvirt connection streams them."""
    stream = volume.connect().newStream(0)
    volume.download(stream, 0, 0, 0)
    try:
        while chunk := stream.recv(CHUNK):
            yield chunk
    except BaseException:
        stream.abort()
        raise
    stream.finish()


def _volume_xml(name: str, capacity: int) -> str:
    """A raw file of `capacity` bytes, readable by the hypervisor's user: an upload fills it,
    and a refresh of the pool then reads its format (a qcow2 disk is seen as one)."""
    return (f"<volume><name>{name}</name><capacity>{capacity}</capacity><target>"
            f"<format type='raw'/><permissions><mode>0644</mode></permissions></target>"
            f"</volume>")


def _marker_bytes(marker: dict[str, Any]) -> bytes:
    data = json.dumps(marker, sort_keys=True).encode()
    if len(data) >= MARKER_SIZE:
        raise BenchbedError(f"virsh image '{marker.get('name')}': its marker is "
                            f"{len(data)} bytes, more than {MARKER_SIZE}")
    return data + b" " * (MARKER_SIZE - len(data) - 1) + b"\n"


def layers(pool: Any, name: str) -> list[str]:
    """Template `name` of `pool` and what it backs onto: its base first, `name` last."""
    found = [name]
    while (meta := _meta(pool, found[0]) or {}).get("kind") == "snapshot":
        found.insert(0, meta["base"])
    return found


def copy_template(source_pool: Any, target_pool: Any, name: str, owner: str) -> None:
    """Template `name` (its base already copied) from `source_pool` (as ensure_pool left it)
    into `target_pool`: a half-made marker owned by `owner` first, the volumes, the complete
    marker last.

    One copy of a name runs at a time on this machine; a half-made one found under that
    lock was left by a copy that died, and is made again. (Copies from another machine
    into the same libvirt host are not coordinated.)"""
    import libvirt

    marker = _meta(source_pool, name)
    if marker is None or marker.get("state") == HALF_MADE:
        raise NotFoundError(f"virsh template '{name}' is not complete on this machine")
    with _build_lock(f"copy-{name}"):
        refresh_pool(target_pool)  # the copy that held the lock may have made it meanwhile
        if is_complete(target_pool, name):
            return
        if marker.get("kind") == "snapshot":
            base = template_in(target_pool, marker["base"])
            if Path(base.disk) != POOL_PATH / f"{marker['base']}.qcow2":
                raise BenchbedError(f"virsh: pool {POOL} of {target_pool.connect().getURI()} "
                                    f"is not at {POOL_PATH}, where snapshot '{name}' finds its "
                                    f"base")
        _delete_volumes(target_pool, name)
        half_made = {"name": name, "state": HALF_MADE, "owner": owner, "created_at": _now()}
        json_volume = target_pool.createXML(_volume_xml(f"{name}.json", MARKER_SIZE), 0)
        _upload(json_volume, [_marker_bytes(half_made)], MARKER_SIZE)
        for suffix in ("qcow2", "vmlinuz", "initrd"):
            volume = source_pool.storageVolLookupByName(f"{name}.{suffix}")
            size = volume.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2]
            copy = target_pool.createXML(_volume_xml(f"{name}.{suffix}", size), 0)
            _upload(copy, _downloaded(volume), size)
        _upload(json_volume, [_marker_bytes(marker)], MARKER_SIZE)
        refresh_pool(target_pool)  # the uploaded volumes' formats: a qcow2 disk is seen as one


def _delete_volumes(pool: Any, name: str) -> None:
    """Every volume of image `name` that the pool had when its caller rescanned it under the
    name's lock, through libvirt (which drops each from the pool as it deletes it)."""
    import libvirt

    for suffix in SUFFIXES:
        try:
            pool.storageVolLookupByName(f"{name}.{suffix}").delete(0)
        except libvirt.libvirtError as error:
            if error.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise


def _write_marker(name: str, marker: dict[str, Any]) -> None:
    """Replace NAME.json in one rename: a reader sees the old marker or the new one."""
    os.replace(_write_temporary(name, marker), POOL_PATH / f"{name}.json")


def _write_temporary(name: str, marker: dict[str, Any]) -> Path:
    """The marker, complete, in a file beside the pool (on its filesystem) but not in it."""
    BUILD_PATH.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f"{name}.", suffix=".json", dir=BUILD_PATH)
    with os.fdopen(handle, "w") as out:
        json.dump(marker, out, sort_keys=True)
        out.write("\n")
    os.chmod(temporary, 0o644)
    return Path(temporary)


def _work_dir(name: str) -> Path:
    return BUILD_PATH / f"{name}.save"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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
