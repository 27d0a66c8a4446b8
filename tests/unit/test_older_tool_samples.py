"""The older tool's own sample deployment configs (openstack/rally, samples/deployments at
commit 1590e323, copied unchanged into tests/data/older-tool): each validates, or is refused
with one line naming the key that cannot exist here."""

from pathlib import Path

import pytest

from benchbed import api, config
from benchbed.errors import ConfigError

SAMPLES = Path(__file__).parents[1] / "data" / "older-tool"

VALID = ["existing.json", "existing-keystone-v3.json", "existing-with-given-endpoint.json",
         "existing-with-predefined-users.json", "fuel-ha.json", "fuel-multinode.json",
         "devstack-in-existing-servers.json", "devstack-in-openstack.json", "multihost.json"]
# sample -> (config path in the message, what the message says)
REFUSED = {
    "devstack-by-cobbler.json": ("controller.provider.type",
                                 "CobblerProvider is not supported"),
    "devstack-in-lxc.json": ("provider.tunnel_to",
                             "is not supported: the older tool's IPIP tunnel"),
    # LXC containers here are Debian's: no Ubuntu archive is reachable from this machine
    "devstack-lxc-engine-in-existing-servers.json": ("controller.provider.distribution",
                                                     "'ubuntu' is not one of ['debian']"),
}


@pytest.mark.parametrize("name", VALID)
def test_sample_validates_unchanged(name: str) -> None:
    api.validate(config.load_file(SAMPLES / name))


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_sample_is_refused_with_one_line_naming_the_key(name: str) -> None:
    where, message = REFUSED[name]
    with pytest.raises(ConfigError) as refused:
        api.validate(config.load_file(SAMPLES / name))
    text = str(refused.value)
    assert text.startswith(f"config {where}: ") and message in text
    assert "\n" not in text


def test_older_spellings_of_the_multihost_sample() -> None:
    """`localrc` and `DummyProvider` as the older tool's multihost sample has them."""
    loaded = config.load_file(SAMPLES / "multihost.json")
    assert loaded["controller"]["provider"]["type"] == "DummyProvider"
    api.plugin.normalize_legacy(loaded, api.plugin.ENGINES)
    assert loaded["controller"]["provider"]["type"] == "ExistingServers"
    assert loaded["nodes"][0]["provider"]["type"] == "ExistingServers"


def test_every_sample_of_that_commit_is_covered() -> None:
    assert {p.name for p in SAMPLES.glob("*.json")} == set(VALID) | set(REFUSED)


def test_the_devstack_lxc_engine_sample_validates_with_debian() -> None:
    """Its shape (an LxcEngine whose template is a DevStack compute) is accepted once its
    containers are Debian's; the template clones as a node."""
    loaded = config.load_file(SAMPLES / "devstack-lxc-engine-in-existing-servers.json")
    loaded["controller"]["provider"]["distribution"] = "debian"
    loaded["nodes"][0]["distribution"] = "debian"
    with pytest.warns(FutureWarning, match="'localrc' is deprecated"):
        api.validate(loaded)
