"""LXC images streamed between hosts: a host that lacks the deployment's image gets it from
one that has it, through this machine (the hosts need no way to each other), instead of
building its own; a stream cut short leaves nothing behind on the receiving host.

Hosts are namespace hosts (tests/nshosts.py): host 0 has this machine's base image, host 1
starts with an empty LXC store. Underlay 10.254.84.0/24, container networks 10.254.86.0/24
(host 0) and 10.254.87.0/24 (host 1), names `bbim`.
"""

import json
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchbed.errors import BenchbedError
from benchbed.images.lxc import DEFAULT_RELEASE, SCRIPT, LxcImageStore, image_name
from benchbed.server import Server, pipe, script_command
from tests.conftest import cli_for, ledger_rows, write_yaml
from tests.nshosts import NsHost, namespace_hosts

pytestmark = pytest.mark.root

PREFIX = "bbim"
IMAGE = image_name(DEFAULT_RELEASE)
MARKER = "benchbed-image.json"


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[NsHost], Path]]:
    with namespace_hosts(PREFIX, "10.254.84.0/24", 2, tmp_path_factory.mktemp("nshosts"),
                         without_image=frozenset({1})) as made:
        yield made


def store_of(host: NsHost) -> list[str]:
    """What the host's LXC store holds (its own /var/lib/lxc), hidden entries included."""
    return sorted(host.run("ls -A /var/lib/lxc").stdout.split())


def test_a_host_without_the_image_gets_it_streamed_and_its_containers_run(
        hosts: tuple[list[NsHost], Path], tmp_path: Path) -> None:
    machines, key = hosts
    assert store_of(machines[1]) == []
    home = tmp_path / "home"
    cli = cli_for(home)
    config = {"type": "ServersEngine",
              "provider": {"type": "LxcProvider", "start_lxc_network": "10.254.86.0/24",
                           "container_name_prefix": f"{PREFIX}-c", "containers_per_host": 1,
                           "host_provider": {"type": "ExistingServers", "credentials": [
                               host.credential(key) for host in machines]}}}
    try:
        cli.ok("deployment", "create", "--file", write_yaml(tmp_path / "d.yaml", config),
               "--name", PREFIX, timeout=900)
        received = machines[1].run(f"cat /var/lib/lxc/{IMAGE}/{MARKER}").stdout
        assert json.loads(received) == json.loads(Path(f"/var/lib/lxc/{IMAGE}/{MARKER}")
                                                  .read_text())
        # the same files, owners, modes, links and contents, not just the marker
        listing = (f"cd /var/lib/lxc/{IMAGE} && find rootfs -xdev -printf '%p %y %U:%G %m "
                   f"%l\\n' | sort | sha256sum && find rootfs -xdev -type f -exec sha256sum "
                   f"{{}} + | sort | sha256sum")
        assert machines[1].run(listing).stdout == machines[0].run(listing).stdout
        timeline = cli.json("deployment", "show", PREFIX)["timeline"]
        streamed = [step for step in timeline if step["step"] == "stream LXC image"]
        assert [step["detail"] for step in streamed] == [
            f"{IMAGE}: {machines[0].address} -> {machines[1].address}"], streamed
        assert not any(step["step"] == "build LXC image" for step in timeline)
        results = cli.json("deployment", "check", PREFIX)
        assert len(results) == 2 and all(result["ok"] for result in results), results
        cli.ok("deployment", "destroy", PREFIX, timeout=600)
        assert store_of(machines[1]) == [IMAGE]  # an image is a cache: it stays
        assert ledger_rows(home) == 0
        # a second deployment finds it there: nothing streamed again
        cli.ok("deployment", "create", "--file", write_yaml(tmp_path / "d.yaml", config),
               "--name", f"{PREFIX}-again", timeout=900)
        timeline = cli.json("deployment", "show", f"{PREFIX}-again")["timeline"]
        assert not any(step["step"] == "stream LXC image" for step in timeline)
        cli.ok("deployment", "destroy", f"{PREFIX}-again", timeout=600)
    finally:
        cli.destroy_all()
        machines[1].run(f"rm -rf /var/lib/lxc/{IMAGE} /var/lib/lxc/.benchbed-incoming-*")


@pytest.mark.parametrize("cut_at", ["head -c 50000000", "head -c 0"])
def test_a_stream_cut_short_leaves_nothing_on_the_receiving_host(
        hosts: tuple[list[NsHost], Path], cut_at: str) -> None:
    """The pack's first bytes only (the sender's connection dropped, say): the receiver
    never saw the marker, its last member, so it keeps nothing and says so."""
    machines, key = hosts
    target = Server(host=machines[1].address, key=str(key))
    local = LxcImageStore()
    try:
        with pytest.raises(BenchbedError) as failed:
            pipe(local.host.ssh, f"sh -c {_quoted(script_command(SCRIPT, ['pack', IMAGE]))} "
                                 f"| {cut_at}",
                 target.ssh, script_command(SCRIPT, ["receive", IMAGE, "/var/lib/lxc"]),
                 timeout=300)
        message = str(failed.value)
        assert "\n" not in message
        assert "ended before its marker" in message or "broke off, not kept: tar: " in message, \
            message
        assert store_of(machines[1]) == []
    finally:
        target.close()
        machines[1].run(f"rm -rf /var/lib/lxc/{IMAGE} /var/lib/lxc/.benchbed-incoming-*")


def _quoted(command: list[str]) -> str:
    return shlex.quote(shlex.join(command))
