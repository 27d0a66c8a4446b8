"""A Debian guest image for a cloud that boots real guests, built here from Debian's packages.

It is the virsh template (benchbed.images.virsh: debootstrap, ext4 without a partition table,
kernel and initrd beside it) with a different seed: instead of the kernel command line,
the guest reads Nova's config drive (label config-2) at boot, before systemd-networkd, for
its key pair, host name and static address (benchbed/scripts/openstack/seed.py). Nova boots
it by direct kernel boot, as VirshProvider does: the disk goes to Glance with `kernel_id`
and `ramdisk_id` properties naming the kernel (aki) and initrd (ari) images, so no
bootloader is emulated.
"""

import fcntl
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchbed import local
from benchbed.images.virsh import BUILD_PATH, POOL_PATH, VirshImageStore
from benchbed.server import script_text

SEED_UNIT = """\
[Unit]
Description=benchbed: key pair, host name and address from the config drive
DefaultDependencies=no
After=local-fs.target systemd-udevd.service
Before=systemd-networkd.service network-pre.target ssh.service
Wants=network-pre.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/benchbed-config-drive
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
"""


@dataclass(frozen=True)
class GuestImage:
    """The three files that go to Glance."""

    disk: Path
    kernel: Path
    initrd: Path


def build(template: str = "debian-bookworm", release: str = "bookworm") -> GuestImage:
    """The image, built once per template (its virsh template first, where missing)."""
    target = BUILD_PATH / f"openstack-{template}"
    image = GuestImage(disk=target / "disk.qcow2", kernel=target / "vmlinuz",
                       initrd=target / "initrd")
    with _lock(target):
        if image.disk.exists():
            return image
        if not (POOL_PATH / f"{template}.qcow2").exists():
            VirshImageStore().build(template, release, rebuild=False)
        work = Path(tempfile.mkdtemp(prefix=f"openstack-{template}.", dir=BUILD_PATH))
        try:
            _derive(template, work)
            for name in ("vmlinuz", "initrd"):
                shutil.copyfile(POOL_PATH / f"{template}.{name}", work / name)
            target.mkdir(parents=True, exist_ok=True)
            for path in (image.kernel, image.initrd, image.disk):
                shutil.move(work / path.name, path)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return image


def _derive(template: str, work: Path) -> None:
    """Copy the template's disk and swap its kernel-command-line seed for the config drive's."""
    raw, rootfs = work / "disk.raw", work / "rootfs"
    local.run(["qemu-img", "convert", "-O", "raw", str(POOL_PATH / f"{template}.qcow2"),
               str(raw)], timeout=600)
    rootfs.mkdir()
    local.run(["mount", "-o", "loop", str(raw), str(rootfs)], timeout=60)
    try:
        seed = rootfs / "usr/local/sbin/benchbed-config-drive"
        seed.write_text(script_text("openstack/seed.py"))
        seed.chmod(0o755)
        (rootfs / "etc/systemd/system/benchbed-config-drive.service").write_text(SEED_UNIT)
        wants = rootfs / "etc/systemd/system/multi-user.target.wants"
        (wants / "benchbed-config-drive.service").symlink_to(
            "/etc/systemd/system/benchbed-config-drive.service")
        # the virsh seed reads the kernel command line, and its network file asks DHCP
        (wants / "benchbed-seed.service").unlink(missing_ok=True)
        (rootfs / "etc/systemd/network/10-benchbed.network").unlink(missing_ok=True)
    finally:
        local.run(["umount", str(rootfs)], timeout=60)
    local.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "disk.qcow2")],
              timeout=600)


@contextmanager
def _lock(target: Path) -> Iterator[None]:
    """One build per image at a time (tests and the benchmark may race)."""
    BUILD_PATH.mkdir(parents=True, exist_ok=True)
    with open(f"{target}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
