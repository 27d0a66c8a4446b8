"""VirshProvider's choices that need no libvirt: KVM or emulation, and the host's mirrors."""

import json
from pathlib import Path

import pytest

from benchbed.errors import InputError
from benchbed.images import virsh as images
from benchbed.providers.virsh import VirshProvider, choose_domain_type


class FakeConnection:
    def __init__(self, domain_types: list[str], features: list[str]) -> None:
        self.domain_types = domain_types
        self.features = features

    def getCapabilities(self) -> str:
        features = "".join(f"<feature name='{name}'/>" for name in self.features)
        domains = "".join(f"<domain type='{kind}'/>" for kind in self.domain_types)
        return (f"<capabilities><host><cpu><arch>x86_64</arch>{features}</cpu></host>"
                f"<guest><arch name='x86_64'>{domains}</arch></guest></capabilities>")


@pytest.mark.parametrize(("domain_types", "features", "expected"), [
    (["qemu", "kvm"], ["vmx", "avx"], "kvm"),
    (["qemu", "kvm"], ["svm"], "kvm"),
    (["qemu", "kvm"], ["avx", "hypervisor"], "qemu"),  # paravirtual /dev/kvm (PVM)
    (["qemu"], ["vmx"], "qemu"),
])
def test_auto_takes_kvm_only_with_hardware_virtualization(
        domain_types: list[str], features: list[str], expected: str) -> None:
    chosen, reason = choose_domain_type(FakeConnection(domain_types, features), "auto",
                                        "qemu:///system")
    assert chosen == expected and reason


def test_configured_type_wins_but_kvm_must_be_offered() -> None:
    pvm = FakeConnection(["qemu", "kvm"], [])
    assert choose_domain_type(pvm, "kvm", "qemu:///system")[0] == "kvm"
    assert choose_domain_type(pvm, "qemu", "qemu:///system")[0] == "qemu"
    with pytest.raises(InputError, match="offers no KVM"):
        choose_domain_type(FakeConnection(["qemu"], ["vmx"]), "kvm", "qemu:///system")


def test_mirrors_come_from_the_hosts_apt_sources(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "debian.sources").write_text(
        "Types: deb\nURIs: file:///srv/mirror/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\n"
        "Types: deb\nURIs: file:///srv/mirror/debian-security\nSuites: bookworm-security\n"
        "Components: main\n")
    monkeypatch.setattr(images, "SOURCES_DIR", tmp_path)
    assert images.mirrors("bookworm") == ("file:///srv/mirror/debian",
                                          "file:///srv/mirror/debian-security")
    with pytest.raises(InputError, match="no apt source"):
        images.mirrors("trixie")


@pytest.mark.parametrize(("config", "uri", "host"), [
    ({}, "qemu:///system", "localhost"),
    ({"uri": "qemu+ssh://admin@10.0.0.5/system"}, "qemu+ssh://admin@10.0.0.5/system", "10.0.0.5"),
    ({"connection": "root@10.0.0.6"}, "qemu+ssh://root@10.0.0.6/system?no_tty=1", "10.0.0.6"),
])
def test_connection_means_libvirt_over_ssh(config: dict[str, str], uri: str, host: str) -> None:
    provider = VirshProvider.__new__(VirshProvider)
    provider.config = VirshProvider.parse_config({"type": "VirshProvider", **config})
    provider.deployment = None
    assert provider.config.libvirt_uri == uri
    assert provider._host().host == host


@pytest.fixture
def pool_error() -> type:
    """A libvirtError as libvirt raises it, its message where get_error_message has it."""
    import libvirt

    class Raised(libvirt.libvirtError):
        def __init__(self, message: str) -> None:
            super().__init__(message)
            self.message = message

        def get_error_message(self) -> str:
            return self.message

    return Raised


class FlakyPool:
    """A pool whose refresh fails with the given errors first, then succeeds."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.calls = 0

    def refresh(self, _flags: int) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


def test_a_pool_refresh_waits_out_another_process_volume_build(pool_error: type) -> None:
    busy = "internal error: pool 'benchbed' has asynchronous jobs running."
    pool = FlakyPool([pool_error(busy), pool_error(busy)])
    images.refresh_pool(pool)
    assert pool.calls == 3


def test_a_pool_refresh_fails_at_once_on_any_other_error(pool_error: type) -> None:
    pool = FlakyPool([pool_error("Storage pool not found")])
    with pytest.raises(pool_error, match="not found"):
        images.refresh_pool(pool)
    assert pool.calls == 1


def test_a_pool_that_stays_busy_fails_in_one_line(pool_error: type,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    real_retry = images.retry
    monkeypatch.setattr(images, "retry", lambda attempt, **kwargs: real_retry(
        attempt, **{**kwargs, "timeout": 0.3}))
    busy = "pool 'benchbed' has asynchronous jobs running."
    pool = FlakyPool([pool_error(busy) for _ in range(1000)])
    with pytest.raises(images.BenchbedError, match="stayed busy for 120s"):
        images.refresh_pool(pool)
    assert pool.calls > 1


def test_a_remote_host_without_a_key_is_logged_in_to_with_the_users_default_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchbed.providers import virsh as provider_module

    keys = tuple(tmp_path / name for name in ("id_ed25519", "id_ecdsa", "id_rsa"))
    monkeypatch.setattr(provider_module, "DEFAULT_KEYS", keys)
    remote = VirshProvider.parse_config({"type": "VirshProvider", "connection": "root@h1"})
    assert remote.host_key is None
    keys[2].write_text("rsa")
    assert remote.host_key == str(keys[2])
    keys[0].write_text("ed25519")
    assert remote.host_key == str(keys[0])
    given = VirshProvider.parse_config({"type": "VirshProvider", "connection": "root@h1",
                                        "key": "/etc/bb/key"})
    assert given.host_key == "/etc/bb/key"
    assert VirshProvider.parse_config({"type": "VirshProvider"}).host_key is None


def test_a_marker_fills_its_volume_and_reads_back_through_the_padding() -> None:
    marker = {"name": "t", "release": "bookworm", "kernel": "6.1", "created_at": "now"}
    data = images._marker_bytes(marker)
    assert len(data) == images.MARKER_SIZE
    assert json.loads(data) == marker
    with pytest.raises(images.BenchbedError, match=r"its marker is \d+ bytes"):
        images._marker_bytes({"name": "t", "origin": "x" * images.MARKER_SIZE})
