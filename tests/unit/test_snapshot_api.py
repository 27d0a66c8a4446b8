"""`image save` before anything reaches a host: what is refused, and the ledger rows of a save.

The LXC host script is replaced by a recorded stand-in (LxcImageStore.save/discard); the
deployment, its ledger and the provider are real. tests/integration/test_snapshot.py runs it
all on real LXC.
"""

from pathlib import Path
from typing import Any

import pytest

from benchbed import api
from benchbed.deployment import Deployment, Status
from benchbed.errors import BenchbedError, InputError, NotFoundError
from benchbed.images.lxc import LxcImageStore
from benchbed.providers.lxc import LxcProvider
from tests.conftest import ledger_rows

SERVERS = {"type": "ServersEngine", "provider": {
    "type": "ExistingServers", "credentials": [{"user": "root", "host": "192.0.2.7"}]}}
LXC = {"type": "LxcProvider", "host_provider": {
    "type": "ExistingServers", "credentials": [{"user": "root", "host": "localhost"}]}}


def _finished(name: str, config: dict[str, Any]) -> Deployment:
    deployment = Deployment.create(name, config)
    deployment.set_status(Status.STARTED)
    deployment.set_status(Status.FINISHED)
    deployment.release()
    return deployment


@pytest.mark.parametrize("image", ["x;rm -rf /", "$(id)", "a b", "-rf", "", "x" * 64])
def test_a_bad_image_name_is_refused_first(home: Path, image: str) -> None:
    with pytest.raises(InputError, match="not a valid image name"):
        api.save_image("no-such-deployment", image)


def test_unknown_and_undeployed_deployments_are_refused(home: Path) -> None:
    with pytest.raises(NotFoundError):
        api.save_image("no-such-deployment", "fine")
    Deployment.create("lab", SERVERS).release()
    with pytest.raises(InputError, match="it is deploy->init"):
        api.save_image("lab", "fine")


def test_servers_no_provider_can_save_are_refused_and_the_lease_released(home: Path) -> None:
    _finished("lab", SERVERS)
    with pytest.raises(InputError, match="no servers whose provider can save"):
        api.save_image("lab", "fine")
    assert Deployment.get("lab").lease_owner is None


def _provider_with_containers(count: int) -> LxcProvider:
    deployment = _finished("lab", {"type": "ServersEngine", "provider": LXC})
    provider = LxcProvider(deployment, LXC, "provider")
    for index in range(count):
        with provider.ledger.creating("container", f"c-{index}",
                                      host={"host": "localhost", "user": "root"}):
            pass
    return provider


def test_each_container_becomes_an_image_and_its_row_goes_once_complete(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = _provider_with_containers(2)
    saved: list[tuple[str, str]] = []

    def save(_store: LxcImageStore, name: str, container: str, marker: dict[str, Any]
             ) -> dict[str, Any]:
        # the row is there while the image is being made
        assert [r.name for r in provider.ledger.resources("image") if r.name == name]
        saved.append((name, container))
        return {"name": name, **marker}

    monkeypatch.setattr(LxcImageStore, "save", save)
    images = provider.save_images("snap", {"deployment": "lab"})
    assert sorted(saved) == [("snap-0", "c-0"), ("snap-1", "c-1")]
    assert {i["origin"]["container"] for i in images} == {"c-0", "c-1"}
    assert provider.ledger.resources("image") == []
    assert ledger_rows(home) == 2  # the containers only


def test_a_failed_save_discards_the_half_made_image(home: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    provider = _provider_with_containers(1)
    discarded: list[str] = []

    def fail(*_args: Any) -> dict[str, Any]:
        raise BenchbedError("disk full")

    monkeypatch.setattr(LxcImageStore, "save", fail)
    monkeypatch.setattr(LxcImageStore, "discard", lambda _store, name: discarded.append(name))
    with pytest.raises(BenchbedError, match="disk full"):
        provider.save_images("snap", {"deployment": "lab"})
    assert discarded == ["snap"] and provider.ledger.resources("image") == []
