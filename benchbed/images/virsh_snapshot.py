"""How a VM's disk becomes a snapshot template (`benchbed image save` with VirshProvider).

The snapshot's qcow2 backs onto the image the VM's overlay backs onto and holds a copy of
that overlay's own clusters only (`qemu-img convert -B`): a save copies what the deployment
wrote, not the template under it, and a clone's chain is template <- snapshot <- overlay.
The copy is taken while the VM is paused (after a `sync` in the guest): qemu flushes its
qcow2 caches when it stops, so the file is what the guest had on its disk at that moment.

What each clone must make for itself (machine-id, SSH host keys, the origin's login key,
DHCP leases, apt's downloaded packages, the random seed) is then taken out of the copy with
`debugfs`, on the snapshot exported as a raw file through FUSE by qemu-storage-daemon: the
guest's filesystem is read by e2fsprogs in user space, never mounted in the host's kernel,
so none of its symlinks can point outside it.
"""

import os
import re
import signal
import tempfile
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from benchbed import local
from benchbed.errors import BenchbedError

COPY_TIMEOUT = 900
SEAL_TIMEOUT = 600
# Files whose name a clone must not inherit, by directory: only names that match (and that
# debugfs reads as one word) are removed; other names are left, never quoted into a command.
REMOVED = {
    "/etc/ssh": re.compile(r"ssh_host_[a-z0-9]+_key(\.pub)?"),
    "/etc/apt/apt.conf.d": re.compile(r"01benchbed-proxy"),
    "/var/lib/dhcp": re.compile(r"[A-Za-z0-9._-]+\.leases?"),
    "/var/lib/systemd": re.compile(r"random-seed|credential\.secret"),
    "/var/cache/apt/archives": re.compile(r"[A-Za-z0-9._+~%:-]+\.deb"),
    "/var/cache/apt/archives/partial": re.compile(r"[A-Za-z0-9._+~%:-]+"),
}
AUTHORIZED_KEYS = re.compile(r"authorized_keys2?")
# ls -p: /inode/mode/uid/gid/name/size/
LISTING = re.compile(r"/(\d+)/(\d+)/\d+/\d+/(.*)/\d*/")
REGULAR, SYMLINK = "10", "12"


def copy_disk(source: str, backing: str, target: Path) -> None:
    """Copy the clusters the overlay `source` holds above `backing` into a new qcow2 on it.

    `-U`: the VM (paused) still holds its image's lock; it writes nothing meanwhile.
    """
    local.run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "qcow2", "-B", backing,
               "-F", "qcow2", source, str(target)], timeout=COPY_TIMEOUT)
    target.chmod(0o600)  # a deployed system's databases and keys are in it


def homes(user: str) -> list[str]:
    """Where the login key the seed installs for `user` lives (seed.sh: useradd -m)."""
    return ["/root"] if user == "root" else ["/root", f"/home/{user}"]


def parse_listing(text: str) -> list[tuple[str, str]]:
    """(name, mode) of each entry of a `debugfs -R 'ls -p DIR'` listing."""
    entries = []
    for line in text.splitlines():
        found = LISTING.fullmatch(line.strip())
        if found and found[3] not in (".", ".."):
            entries.append((found[3], found[2]))
    return entries


def removals(listings: dict[str, list[tuple[str, str]]]) -> list[str]:
    """The paths to remove: regular files and symlinks whose name matches their directory's
    pattern (REMOVED, or authorized_keys in a .ssh directory)."""
    paths = []
    for directory, entries in listings.items():
        pattern = AUTHORIZED_KEYS if directory.endswith("/.ssh") else REMOVED[directory]
        for name, mode in entries:
            if pattern.fullmatch(name) and mode.zfill(6)[:2] in (REGULAR, SYMLINK):
                paths.append(f"{directory}/{name}")
    return paths


def seal_commands(removed: list[str], files: dict[str, Path]) -> list[str]:
    """debugfs commands: remove `removed`, then write each `files` path from a host file."""
    commands = [f"rm {path}" for path in removed]
    for path, source in files.items():
        directory, name = path.rsplit("/", 1)
        commands += [f"cd {directory or '/'}", f"rm {name}", f"write {source} {name}"]
    return commands


def seal(disk: Path, hostname: str, user: str, work: Path) -> None:
    """Take out of the snapshot `disk` what every clone makes of its own, and check it did."""
    export = work / f"{disk.stem}.raw"
    with _exported(disk, export, work):
        checked = local.run(["e2fsck", "-p", str(export)], check=False, timeout=SEAL_TIMEOUT)
        if checked.returncode >= 4:  # 1 and 2: the journal replayed and errors corrected
            raise BenchbedError(f"{disk.name}: e2fsck exited {checked.returncode}: "
                                f"{(checked.stdout + checked.stderr).strip()[-300:]}")
        directories = [*REMOVED, *(f"{home}/.ssh" for home in homes(user))]
        removed = removals(_listings(export, directories))
        with tempfile.TemporaryDirectory(dir=work) as scratch:
            files = _identity_files(Path(scratch), hostname)
            script = Path(scratch) / "seal.debugfs"
            script.write_text("\n".join(seal_commands(removed, files)) + "\n")
            local.run(["debugfs", "-w", "-f", str(script), str(export)], timeout=SEAL_TIMEOUT)
        left = removals(_listings(export, directories))
        if left:
            raise BenchbedError(f"{disk.name}: debugfs left {', '.join(left)}")


def _identity_files(scratch: Path, hostname: str) -> dict[str, Path]:
    """What the template has in place of a machine's identity: an empty machine-id (systemd
    takes the clone's from the kernel command line) and the image's own name."""
    contents = {"/etc/machine-id": ("", 0o444), "/etc/hostname": (f"{hostname}\n", 0o644),
                "/etc/hosts": (f"127.0.0.1 localhost\n127.0.1.1 {hostname}\n", 0o644)}
    files = {}
    for index, (path, (text, mode)) in enumerate(contents.items()):
        source = scratch / f"file-{index}"
        source.write_text(text)
        source.chmod(mode)
        files[path] = source
    return files


def _listings(export: Path, directories: list[str]) -> dict[str, list[tuple[str, str]]]:
    listed = {}
    for directory in directories:
        result = local.run(["debugfs", "-R", f"ls -p {directory}", str(export)],
                           timeout=SEAL_TIMEOUT)
        listed[directory] = parse_listing(result.stdout)
    return listed


class _exported:
    """`disk` as a raw file at `export` (qemu-storage-daemon's FUSE export) while in use."""

    def __init__(self, disk: Path, export: Path, work: Path) -> None:
        self.disk, self.export, self.pidfile = disk, export, work / f"{disk.stem}.pid"

    def __enter__(self) -> Path:
        stop_export(self.export, self.pidfile)  # one left by a save that was killed
        self.export.touch()
        local.run(["qemu-storage-daemon", "--blockdev",
                   f"driver=file,node-name=file,filename={self.disk}", "--blockdev",
                   "driver=qcow2,node-name=disk,file=file", "--export",
                   f"type=fuse,id=export,node-name=disk,mountpoint={self.export},writable=on",
                   "--pidfile", str(self.pidfile), "--daemonize"], timeout=60)
        return self.export

    def __exit__(self, *_: object) -> None:
        stop_export(self.export, self.pidfile)


def stop_export(export: Path, pidfile: Path) -> None:
    """Stop the export's daemon (it writes qcow2's metadata as it exits), then unmount."""
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        pid = 0
    if pid and _is_storage_daemon(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while _is_storage_daemon(pid):
            if time.monotonic() > deadline:
                raise BenchbedError(f"qemu-storage-daemon {pid} did not stop")
            time.sleep(0.05)
    if _mounted(export):
        local.run(["umount", str(export)], timeout=60)
    export.unlink(missing_ok=True)
    pidfile.unlink(missing_ok=True)


def _is_storage_daemon(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(
            b"qemu-storage-daemon")
    except OSError:
        return False


def _mounted(path: Path) -> bool:
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    return any(line.split()[4] == str(path) for line in mounts)


def users(conn: Any, pool: Any, disk: str) -> list[str]:
    """Who still needs the qcow2 `disk`: every defined domain whose disk chain holds it, and
    every other volume of the pool backed onto it (a snapshot, an overlay without domain).
    Whatever libvirt cannot answer is an error, never taken for "nobody"."""
    import libvirt

    try:
        return _users(conn, pool, disk)
    except libvirt.libvirtError as error:
        raise BenchbedError(f"virsh: cannot tell what uses {disk}: "
                            f"{error.get_error_message()}") from None


def _users(conn: Any, pool: Any, disk: str) -> list[str]:
    volumes = {name: _lookup(pool, name) for name in pool.listVolumes()}
    volumes = {name: volume for name, volume in volumes.items() if volume is not None}
    backing = {name: backing_of(volume) for name, volume in volumes.items()}
    by_path = {volume.path(): name for name, volume in volumes.items()}
    found: list[str] = []
    owned: set[str] = set()
    for domain in conn.listAllDomains(0):
        sources = domain_disks(_domain_xml(domain), pool)
        owned.update(by_path.get(source, "") for source in sources)  # named by the domain
        if any(disk in chain_of(source, backing, by_path) for source in sources):
            found.append(f"domain {domain.name()}")
    for name, path in sorted(backing.items()):
        if path == disk and name not in owned:
            kind = "snapshot" if name.endswith(".qcow2") and \
                f"{name[:-6]}.json" in backing else "volume"
            found.append(f"{kind} {name[:-6] if kind == 'snapshot' else name}")
    return found


def domain_disks(xml: str, pool: Any) -> list[str]:
    """The paths of a domain's disks (files, or volumes of our pool)."""
    paths = []
    for source in ElementTree.fromstring(xml).iterfind("devices/disk/source"):
        volume = _lookup(pool, source.get("volume", "")) \
            if source.get("pool") == pool.name() else None
        if source.get("file"):
            paths.append(source.get("file", ""))
        elif volume is not None:
            paths.append(volume.path())
    return paths


def chain_of(path: str, backing: dict[str, str | None], by_path: dict[str, str]) -> list[str]:
    """`path` and the images under it, as far as the pool knows them."""
    chain = [path]
    while chain[-1] in by_path and backing.get(by_path[chain[-1]]) and len(chain) < 64:
        chain.append(backing[by_path[chain[-1]]])  # type: ignore[arg-type]
    return chain


def _domain_xml(domain: Any) -> str:
    """A domain's definition; one undefined since it was listed has no disks."""
    import libvirt

    try:
        return domain.XMLDesc(0)
    except libvirt.libvirtError as error:
        if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return "<domain/>"
        raise


def _lookup(pool: Any, name: str) -> Any:
    """The pool's volume `name`, or None if it is gone (deleted since the pool was listed)."""
    import libvirt

    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError as error:
        if error.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return None
        raise BenchbedError(f"virsh: cannot look up volume {name}: "
                            f"{error.get_error_message()}") from None


def backing_of(volume: Any) -> str | None:
    """The backing file of a pool volume (overlays name their template here).

    Any libvirt error propagates: taken for "none", it would let `image delete` remove a
    template in use.
    """
    import libvirt

    try:
        xml = ElementTree.fromstring(volume.XMLDesc(0))
    except libvirt.libvirtError as error:
        raise BenchbedError(f"virsh: cannot tell what volume {volume.name()} is backed by: "
                            f"{error.get_error_message()}") from None
    return xml.findtext("backingStore/path")
