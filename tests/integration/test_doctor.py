"""`benchbed doctor`: one line per check, a failure says what to do, exit 1 if any failed.

Runs as root against this machine. Network range of this file: 10.254.170.64/26 (free) and
10.254.170.128/26 (taken, by a bridge the test makes and removes). The missing
command is missing from a PATH of the test's own; the missing extra is a stand-in module
that fails to import, as a missing libvirt-python does.
"""

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import Cli

FREE_NETWORK = "10.254.170.64/26"
TAKEN_NETWORK = "10.254.170.128/26"
DUMMY = "bbdoctor0"


def netns_config(tmp_path: Path, network: str) -> str:
    path = tmp_path / "netns.yaml"
    path.write_text(yaml.safe_dump({"type": "ServersEngine", "provider": {
        "type": "NetnsProvider", "network": network, "amount": 3}}))
    return str(path)


def failures(result: subprocess.CompletedProcess[str]) -> list[str]:
    lines = result.stdout.splitlines()
    assert lines and all(line.startswith(("ok    ", "FAIL  ")) for line in lines), result.stdout
    return [line for line in lines if line.startswith("FAIL")]


def test_everything_present_exits_0(bb: Cli, tmp_path: Path) -> None:
    result = bb("doctor", "--file", netns_config(tmp_path, FREE_NETWORK))
    assert result.returncode == 0, result.stdout + result.stderr
    assert failures(result) == []
    assert f"ok    network {FREE_NETWORK} is free  [provider (NetnsProvider)]" in \
        result.stdout.splitlines()
    assert "doctor: all 6 checks passed" in result.stderr


def test_missing_command_is_one_line_naming_its_package(bb: Cli, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"):
        for program in Path(directory).iterdir():
            if program.name != "ssh-keygen" and not (bin_dir / program.name).exists():
                (bin_dir / program.name).symlink_to(program)
    result = bb("doctor", "--file", netns_config(tmp_path, FREE_NETWORK),
                env={"PATH": str(bin_dir)})
    assert result.returncode == 1
    assert failures(result) == ["FAIL  command ssh-keygen: not found; to fix: apt-get install "
                                "-y --no-install-recommends openssh-client  "
                                "[provider (NetnsProvider)]"]


@pytest.fixture
def taken_network() -> Iterator[str]:
    """A bridge with an address of the network, removed even if the test fails."""
    subprocess.run(["ip", "link", "add", DUMMY, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.254.170.129/26", "dev", DUMMY], check=True)
        subprocess.run(["ip", "link", "set", DUMMY, "up"], check=True)
        yield TAKEN_NETWORK
    finally:
        subprocess.run(["ip", "link", "delete", DUMMY], check=True)


def test_taken_network_is_one_line(bb: Cli, tmp_path: Path, taken_network: str) -> None:
    result = bb("doctor", "--file", netns_config(tmp_path, taken_network))
    assert result.returncode == 1
    assert failures(result) == [
        f"FAIL  network {taken_network} is free: overlaps {taken_network} on {DUMMY}; "
        "to fix: choose another 'network' in the config, or remove what uses it  "
        "[provider (NetnsProvider)]"]


def test_missing_extra_is_one_line(bb: Cli, tmp_path: Path) -> None:
    """A VirshProvider on a remote libvirt needs only the bindings on this machine."""
    stand_in = tmp_path / "site"
    stand_in.mkdir()
    (stand_in / "libvirt.py").write_text("raise ImportError('No module named libvirt')\n")
    key = tmp_path / "libvirt-host-key"
    key.write_text("-")
    config = tmp_path / "virsh.yaml"
    config.write_text(yaml.safe_dump({"type": "ServersEngine", "provider": {
        "type": "VirshProvider", "uri": "qemu+ssh://root@192.0.2.7/system", "key": str(key)}}))
    result = bb("doctor", "--file", str(config), env={"PYTHONPATH": str(stand_in)})
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "FAIL  python module libvirt: cannot import libvirt: No module named libvirt; to fix: "
        "pip install 'benchbed[libvirt]' in benchbed's virtualenv  [provider (VirshProvider)]",
        f"ok    file {key}  [provider (VirshProvider)]"]


def test_a_remote_libvirt_host_without_a_key_is_one_line(bb: Cli, tmp_path: Path) -> None:
    """With no key given and none of the user's default ones, the doctor says what to set."""
    config = tmp_path / "virsh.yaml"
    config.write_text(yaml.safe_dump({"type": "ServersEngine", "provider": {
        "type": "VirshProvider", "connection": "root@192.0.2.7"}}))
    result = bb("doctor", "--file", str(config), env={"HOME": str(tmp_path)})
    assert result.returncode == 1
    assert [line for line in result.stdout.splitlines() if line.startswith("FAIL")] == [
        f"FAIL  file {tmp_path}/.ssh/id_ed25519: does not exist; to fix: set key: the private "
        f"key that logs in to the libvirt host  [provider (VirshProvider)]"]


def test_bad_config_is_exit_2_and_one_line(bb: Cli, tmp_path: Path) -> None:
    result = bb("doctor", "--file", netns_config(tmp_path, "10.254.170.64/33"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "benchbed: error: config provider.network: not an IPv4 network in CIDR form: "
        "'33' is not a valid netmask"]


def test_without_a_config_every_installed_plugin_is_asked(bb: Cli) -> None:
    result = bb("doctor", "--json")
    checks = {check["what"]: check for check in json.loads(result.stdout)}
    assert {"NetnsProvider", "LxcProvider", "VirshProvider"} <= \
        {name for check in checks.values() for name in check["needed_by"]}
    assert not any(what.startswith("network ") for what in checks)
    assert result.returncode == (0 if all(c["ok"] for c in checks.values()) else 1)
