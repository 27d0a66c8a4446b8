"""`image save` with VirshProvider, without a hypervisor: what is taken out of a snapshot, who
uses an image (libvirt's own test driver), half-made markers, and the ledger rows of a save.

tests/integration/test_virsh_snapshot.py runs it all on real libvirt.
"""

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from benchbed import api
from benchbed.cli.image import _origin
from benchbed.deployment import Deployment, Status
from benchbed.errors import BenchbedError, InputError, NotFoundError
from benchbed.images import virsh as images
from benchbed.images import virsh_snapshot as snapshots
from benchbed.providers.virsh import VirshProvider
from tests.conftest import ledger_rows

VIRSH = {"type": "VirshProvider", "network": "10.254.210.0/24", "domain_name_prefix": "bbvs4"}

LISTING = """\
/2/040755/0/0/.//
/2/040755/0/0/..//
/131/100600/0/0/ssh_host_ed25519_key/411/
/132/100644/0/0/ssh_host_ed25519_key.pub/103/
/133/120777/0/0/ssh_host_rsa_key/9/
/134/040755/0/0/ssh_host_dsa_key//
/135/100644/0/0/sshd_config/3289/
/136/100644/0/0/ssh_host_x_key;write /etc/shadow x/1/
/137/100644/0/0/ssh_host_a b_key/1/
"""


def test_only_matching_files_of_each_directory_are_removed() -> None:
    entries = snapshots.parse_listing(LISTING)
    assert ("sshd_config", "100644") in entries and (".", "040755") not in entries
    removed = snapshots.removals({"/etc/ssh": entries, "/root/.ssh": [
        ("authorized_keys", "100600"), ("id_ed25519", "100600")]})
    # the directory and the names debugfs would not read as one word are left alone
    assert removed == ["/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub",
                       "/etc/ssh/ssh_host_rsa_key", "/root/.ssh/authorized_keys"]
    debs = snapshots.removals({"/var/cache/apt/archives": snapshots.parse_listing(
        "/5/100644/0/0/keystone_2%3a22.0.0-2_all.deb/9/\n/6/100640/0/0/lock/0/\n"
        "/7/040700/0/0/partial//\n")})
    assert debs == ["/var/cache/apt/archives/keystone_2%3a22.0.0-2_all.deb"]


def test_every_clone_makes_its_own_identity(tmp_path: Path) -> None:
    assert set(snapshots.REMOVED) >= {"/etc/ssh", "/var/lib/dhcp", "/var/cache/apt/archives"}
    assert snapshots.homes("root") == ["/root"]
    assert snapshots.homes("debian") == ["/root", "/home/debian"]
    commands = snapshots.seal_commands(["/etc/ssh/ssh_host_ed25519_key"], {
        "/etc/machine-id": Path("/w/file-0"), "/etc/hostname": Path("/w/file-1")})
    assert commands == ["rm /etc/ssh/ssh_host_ed25519_key",
                        "cd /etc", "rm machine-id", "write /w/file-0 machine-id",
                        "cd /etc", "rm hostname", "write /w/file-1 hostname"]
    files = snapshots._identity_files(tmp_path, "s4v")
    assert files["/etc/machine-id"].read_text() == ""  # systemd takes the kernel's
    assert files["/etc/machine-id"].stat().st_mode & 0o777 == 0o444
    assert files["/etc/hostname"].read_text() == "s4v\n"


@pytest.fixture
def conn() -> Iterator[Any]:
    """libvirt's test driver: a real libvirt API over an in-memory hypervisor."""
    import libvirt

    connection = libvirt.open("test:///default")
    yield connection
    connection.close()


def _volume(pool: Any, name: str, backing: str | None = None) -> str:
    store = f"<backingStore><path>{backing}</path><format type='qcow2'/></backingStore>" \
        if backing else ""
    pool.createXML(f"<volume><name>{name}</name><capacity>1048576</capacity>{store}</volume>", 0)
    return pool.storageVolLookupByName(name).path()


def test_an_image_is_used_by_the_domains_whose_chain_holds_it_and_by_snapshots_on_it(
        conn: Any) -> None:
    pool = conn.storagePoolLookupByName("default-pool")
    base = _volume(pool, "base.qcow2")
    _volume(pool, "base.json")
    snap = _volume(pool, "s4v.qcow2", base)
    _volume(pool, "s4v.json")
    overlay = _volume(pool, "bbvs4-1-0.qcow2", snap)
    _volume(pool, "stray.qcow2", base)
    conn.defineXML("<domain type='test'><name>bbvs4-1-0</name><memory>1024</memory><os><type>"
                   "hvm</type></os><devices><disk type='volume' device='disk'><source "
                   "pool='default-pool' volume='bbvs4-1-0.qcow2'/><target dev='vda'/></disk>"
                   "</devices></domain>")
    assert snapshots.users(conn, pool, base) == ["domain bbvs4-1-0", "snapshot s4v",
                                                 "volume stray.qcow2"]
    assert snapshots.users(conn, pool, snap) == ["domain bbvs4-1-0"]
    assert snapshots.users(conn, pool, overlay) == ["domain bbvs4-1-0"]
    conn.lookupByName("bbvs4-1-0").undefine()
    assert snapshots.users(conn, pool, snap) == ["volume bbvs4-1-0.qcow2"]


class Stream:
    """A libvirt stream a volume's download fills at once, or that an upload writes over its
    volume at the end (in place: libvirt's upload does not shorten a file)."""

    def __init__(self) -> None:
        self.data = b""
        self.upload_to: Path | None = None

    def recv(self, size: int) -> bytes:
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk

    def send(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def finish(self) -> None:
        if self.upload_to is None:
            assert not self.data, "a download is read to its end"
            return
        with self.upload_to.open("r+b") as volume:
            volume.write(self.data)

    def abort(self) -> None:
        self.data = b""


class Connection:
    def newStream(self, _flags: int) -> Stream:
        return Stream()


def _no_volume(name: str) -> Exception:
    import libvirt

    error = libvirt.libvirtError(f"Storage volume not found: {name}")
    error.err = (libvirt.VIR_ERR_NO_STORAGE_VOL, 0, error.args[0], 0, "", None, None, 0, 0)
    return error


class DirectoryPool:
    """A pool of files in one directory, as much of libvirt's pool as the store uses."""

    class Volume:
        def __init__(self, path: Path) -> None:
            self._path = path

        def path(self) -> str:
            return str(self._path)

        def info(self) -> list[int]:
            return [0, 8 << 30, self._path.stat().st_size]

        def connect(self) -> Connection:
            return Connection()

        def infoFlags(self, _flags: int) -> list[int]:
            return [0, self._path.stat().st_size, self._path.stat().st_size]

        def download(self, stream: Stream, _offset: int, _length: int, _flags: int) -> None:
            stream.data = self._path.read_bytes()

        def upload(self, stream: Stream, _offset: int, _length: int, _flags: int) -> None:
            stream.upload_to = self._path

        def delete(self, _flags: int) -> None:
            self._path.unlink()

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.refreshes = 0

    def refresh(self, _flags: int) -> None:
        """Nothing to scan (listVolumes reads the directory): counted, as each one costs a
        real pool a scan of its every volume."""
        self.refreshes += 1

    def createXML(self, xml: str, _flags: int) -> "DirectoryPool.Volume":
        volume = ElementTree.fromstring(xml)
        path = self.directory / volume.findtext("name", "")
        path.write_bytes(bytes(int(volume.findtext("capacity", "0"))))
        return self.Volume(path)

    def listVolumes(self) -> list[str]:
        return sorted(path.name for path in self.directory.iterdir())

    def storageVolLookupByName(self, name: str) -> "DirectoryPool.Volume":
        if not (self.directory / name).exists():
            raise _no_volume(name)
        return self.Volume(self.directory / name)


@pytest.fixture
def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DirectoryPool:
    directory = tmp_path / "images"
    directory.mkdir()
    monkeypatch.setattr(images, "POOL_PATH", directory)
    monkeypatch.setattr(images, "BUILD_PATH", tmp_path / "build")
    found = DirectoryPool(directory)
    monkeypatch.setattr(images, "connect", lambda uri: None)
    monkeypatch.setattr(images, "ensure_pool", lambda conn: found)
    for suffix in ("qcow2", "vmlinuz", "initrd"):
        (directory / f"debian-bookworm.{suffix}").write_text("x")
    (directory / "debian-bookworm.json").write_text(json.dumps(
        {"name": "debian-bookworm", "release": "bookworm", "kernel": "6.1",
         "created_at": "2026-12-02T00:00:00Z"}))
    return found


def test_a_half_made_snapshot_is_listed_as_such_and_never_booted(pool: DirectoryPool) -> None:
    store = images.VirshImageStore()
    store._claim(pool, "s4v-half", "lab/7")
    with pytest.raises(InputError, match="exists already"):
        store._claim(pool, "s4v-half", "other/1")  # a second save of the name
    with pytest.raises(InputError, match="exists already"):
        store.check_new("s4v-half")
    listed = {image["name"]: image for image in store.list()}
    assert listed["s4v-half"]["state"] == "half-made"
    assert listed["debian-bookworm"]["kind"] == "template"
    with pytest.raises(NotFoundError, match="is half-made"):
        images.find_template(None, "s4v-half")
    store.discard("s4v-half", "other/1")  # not the save that left it
    assert "s4v-half.json" in pool.listVolumes()
    store.discard("s4v-half", "lab/7")
    assert pool.listVolumes() == [f"debian-bookworm.{suffix}" for suffix in
                                  ("initrd", "json", "qcow2", "vmlinuz")]


def test_a_complete_snapshot_says_its_base_and_origin_and_discard_keeps_it(
        pool: DirectoryPool) -> None:
    store = images.VirshImageStore()
    store._claim(pool, "s4v-done", "lab/7")
    for suffix in ("qcow2", "vmlinuz", "initrd"):
        (pool.directory / f"s4v-done.{suffix}").write_text("y")
    images._write_marker("s4v-done", {"name": "s4v-done", "kind": "snapshot",
                                      "base": "debian-bookworm", "release": "bookworm",
                                      "kernel": "6.1", "created_at": "2026-12-02T01:00:00Z",
                                      "origin": {"deployment": "lab", "engine": "ServersEngine",
                                                 "domain": "bbvs4-1-0"}})
    store.discard("s4v-done", "lab/7")
    described = {image["name"]: image for image in store.list()}["s4v-done"]
    assert described["kind"] == "snapshot" and described["size"] == "0 MiB"
    assert _origin(described) == "lab (ServersEngine, bbvs4-1-0) on debian-bookworm"
    assert images.find_template(None, "s4v-done").release == "bookworm"


def test_an_image_is_complete_exactly_where_find_template_finds_it(
        pool: DirectoryPool) -> None:
    images.VirshImageStore()._claim(pool, "s4v-half", "lab/7")
    for suffix in ("qcow2", "vmlinuz", "json"):
        (pool.directory / f"s4v-lacking.{suffix}").write_text(
            (pool.directory / f"debian-bookworm.{suffix}").read_text())
    assert images.is_complete(pool, "debian-bookworm")
    assert images.find_template(None, "debian-bookworm").name == "debian-bookworm"
    for name, why in (("s4v-half", "is half-made"), ("s4v-lacking", "does not exist"),
                      ("s4v-none", "does not exist")):
        assert not images.is_complete(pool, name)
        with pytest.raises(NotFoundError, match=why):
            images.find_template(None, name)


def test_removing_an_image_rescans_the_pool_once_under_its_lock(pool: DirectoryPool) -> None:
    store = images.VirshImageStore()
    store._claim(pool, "s4v-gone", "lab/7")
    pool.refreshes = 0
    store.discard("s4v-gone", "lab/7")
    assert "s4v-gone.json" not in pool.listVolumes()
    assert pool.refreshes == 1


def test_a_copy_rescans_its_target_under_its_lock_and_after_its_uploads_only(
        pool: DirectoryPool, tmp_path: Path) -> None:
    target = DirectoryPool(tmp_path / "remote")
    target.directory.mkdir()
    copied = target.directory / "debian-bookworm.vmlinuz"
    images.copy_template(pool, target, "debian-bookworm", "lab/1")
    assert target.listVolumes() == pool.listVolumes()
    assert copied.read_text() == "x"
    assert json.loads((target.directory / "debian-bookworm.json").read_bytes()) == \
        json.loads((pool.directory / "debian-bookworm.json").read_bytes())
    assert (pool.refreshes, target.refreshes) == (0, 2)

    copied.write_text("kept")
    images.copy_template(pool, target, "debian-bookworm", "lab/2")
    assert copied.read_text() == "kept", "a complete copy is not made again"
    assert target.refreshes == 3

    (target.directory / "debian-bookworm.qcow2").unlink()  # as a delete killed halfway
    images.copy_template(pool, target, "debian-bookworm", "lab/3")
    assert copied.read_text() == "x"
    assert target.listVolumes() == pool.listVolumes()


@pytest.mark.parametrize("name", ["s4v.dotted", "-s4v", "s4v;id", "x" * 64])
def test_names_virsh_cannot_use_are_refused(pool: DirectoryPool, name: str) -> None:
    with pytest.raises(InputError, match="not a valid virsh image name"):
        images.VirshImageStore().check_new(name)


def test_the_store_is_found_by_the_providers_type_name_too() -> None:
    assert isinstance(api.image_store("VirshProvider"), images.VirshImageStore)
    with pytest.raises(InputError, match="no image store for provider 'NoSuchProvider'"):
        api.image_store("NoSuchProvider")


# -- the provider's ledger ------------------------------------------------------------------


def _provider_with_domains(count: int) -> VirshProvider:
    deployment = Deployment.create("lab", {"type": "ServersEngine", "provider": VIRSH})
    deployment.set_status(Status.STARTED)
    deployment.set_status(Status.FINISHED)
    deployment.release()
    provider = VirshProvider(deployment, VIRSH, "provider")
    for index in range(count):
        with provider.ledger.creating("domain", f"bbvs4-x-{index}", mac="52:54:00:00:00:01",
                                      address=f"10.254.210.{10 + index}"):
            pass
    return provider


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """The store's calls, instead of libvirt's."""
    import libvirt

    calls: dict[str, list[Any]] = {"check_new": [], "discard": [], "save": []}
    monkeypatch.setattr(images.VirshImageStore, "check_new",
                        lambda _store, name: calls["check_new"].append(name))
    monkeypatch.setattr(images.VirshImageStore, "discard",
                        lambda _store, name, owner: calls["discard"].append((name, owner)))
    monkeypatch.setattr(VirshProvider, "_paused", lambda _self, domain: domain.name)
    # libvirt's test driver, which has none of these domains
    monkeypatch.setattr(VirshProvider, "_conn", libvirt.open("test:///default"))
    return calls


def test_each_vm_becomes_a_snapshot_and_its_row_goes_once_complete(
        home: Path, monkeypatch: pytest.MonkeyPatch, recorded: dict[str, list[Any]]) -> None:
    provider = _provider_with_domains(2)

    def save(_store: Any, name: str, source: str, paused: "AbstractContextManager[Any]",
             marker: dict[str, Any], owner: str, user: str) -> dict[str, Any]:
        rows = [row for row in provider.ledger.resources("image") if row.name == name]
        assert rows and owner == f"{provider.deployment.uuid}/{rows[0].id}"
        recorded["save"].append((name, source, paused, user))
        return {"name": name, **marker}

    monkeypatch.setattr(images.VirshImageStore, "save", save)
    saved = provider.save_images("s4v", {"deployment": "lab"})
    assert recorded["check_new"] == ["s4v-0", "s4v-1"]
    assert sorted(recorded["save"]) == [("s4v-0", "bbvs4-x-0.qcow2", "bbvs4-x-0", "root"),
                                        ("s4v-1", "bbvs4-x-1.qcow2", "bbvs4-x-1", "root")]
    assert {image["origin"]["domain"] for image in saved} == {"bbvs4-x-0", "bbvs4-x-1"}
    assert provider.ledger.resources("image") == [] and ledger_rows(home) == 2


def test_a_name_that_is_taken_is_refused_before_anything_is_recorded(
        home: Path, monkeypatch: pytest.MonkeyPatch, recorded: dict[str, list[Any]]) -> None:
    provider = _provider_with_domains(1)

    def taken(_store: Any, name: str) -> None:
        raise InputError(f"virsh image '{name}' exists already")

    monkeypatch.setattr(images.VirshImageStore, "check_new", taken)
    with pytest.raises(InputError, match="exists already"):
        provider.save_images("s4v", {})
    assert ledger_rows(home) == 1


def test_a_failed_save_is_discarded_and_a_killed_one_by_the_next_save(
        home: Path, monkeypatch: pytest.MonkeyPatch, recorded: dict[str, list[Any]]) -> None:
    provider = _provider_with_domains(1)
    killed = provider.ledger.record("image", "s4v-killed", domain="bbvs4-x-0")

    def fail(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
        raise BenchbedError("disk full")

    monkeypatch.setattr(images.VirshImageStore, "save", fail)
    with pytest.raises(BenchbedError, match="disk full"):
        provider.save_images("s4v", {})
    uuid = provider.deployment.uuid
    assert recorded["discard"][0] == ("s4v-killed", f"{uuid}/{killed.id}")
    assert [name for name, _ in recorded["discard"]] == ["s4v-killed", "s4v"]
    assert provider.ledger.resources("image") == [] and ledger_rows(home) == 1


def test_a_domain_without_a_recorded_address_cannot_be_synced(home: Path) -> None:
    provider = _provider_with_domains(0)
    with provider.ledger.creating("domain", "bbvs4-old-0", mac="52:54:00:00:00:02") as old:
        pass
    with pytest.raises(InputError, match="no recorded address"), provider._paused(old):
        pass


def test_discarding_a_killed_save_resumes_the_vm_it_left_paused(
        home: Path, monkeypatch: pytest.MonkeyPatch, recorded: dict[str, list[Any]]) -> None:
    import libvirt

    provider = _provider_with_domains(0)
    conn = libvirt.open("test:///default")  # its domain "test" runs
    monkeypatch.setattr(VirshProvider, "_conn", conn)
    conn.lookupByName("test").suspend()
    killed = provider.ledger.record("image", "s4v-killed", domain="test")
    provider._discard_image(killed)
    assert conn.lookupByName("test").info()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert recorded["discard"] == [("s4v-killed", f"{provider.deployment.uuid}/{killed.id}")]
