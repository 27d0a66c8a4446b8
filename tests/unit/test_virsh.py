"""VirshProvider's choices that need no libvirt: KVM or emulation, and the host's mirrors."""

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
    provider.config = {"type": "VirshProvider", **config}
    provider.deployment = None
    assert provider.uri == uri
    assert provider._host().host == host
