"""FuelEngine's node filters and node choice, on nodes shaped like Nailgun's."""

import pytest

from benchbed.engines.fuel_nodes import NodeGroup, choose_nodes, parse_filter
from benchbed.errors import ConfigError
from tests.nailgun_sim import default_nodes, make_node

GiB = 1 << 30


@pytest.mark.parametrize(("text", "attribute", "operator", "value"), [
    ("storage>80G", "storage", ">", 80 * GiB),
    ("ram >= 16G", "ram", ">=", 16 * GiB),
    ("cpus>4", "cpus", ">", 4),
    ("mac=52:54:00:AB:cd:01", "mac", "==", "52:54:00:ab:cd:01"),
    ("ram!=512M", "ram", "!=", 512 << 20),
])
def test_filters_parse(text: str, attribute: str, operator: str, value: object) -> None:
    parsed = parse_filter(text, "nodes.compute.filters[0]")
    assert (parsed.attribute, parsed.operator, parsed.value) == (attribute, operator, value)


@pytest.mark.parametrize("text", ["storage>>80G", "disk>1G", "ram>=16Q", "cpus>4G", "cpus>",
                                  "mac<52:54:00:00:00:01", "mac=52:54:00", "ram>1G; reboot"])
def test_malformed_filters_name_the_path(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^config nodes\.compute\.filters\[2\]: malformed"):
        parse_filter(text, "nodes.compute.filters[2]")


def test_narrow_filters_choose_first() -> None:
    """A broad controller filter must not take the only node the compute filter allows."""
    nodes = [make_node(1, "52:54:00:00:00:01", 32, 8, [500]),
             make_node(2, "52:54:00:00:00:02", 32, 8, [50])]
    groups = {"controller": NodeGroup(amount=1, filters=["ram>=16G"]),
              "compute": NodeGroup(amount=1, filters=["storage>80G"])}
    chosen = choose_nodes(groups, nodes)
    assert [n["id"] for n in chosen["compute"]] == [1]
    assert [n["id"] for n in chosen["controller"]] == [2]


def test_shortage_says_how_many_matched_and_which_filter_excluded() -> None:
    groups = {"controller": NodeGroup(amount=3, filters=["ram>=16G", "cpus>8"]),
              "compute": NodeGroup(amount=1)}
    with pytest.raises(ConfigError) as refused:
        choose_nodes(groups, default_nodes())
    assert str(refused.value) == (
        "config nodes.controller: 3 controller node(s) needed, 1 of 6 free node(s) available "
        "(ram>=16G excluded 3, cpus>8 excluded 5)")
