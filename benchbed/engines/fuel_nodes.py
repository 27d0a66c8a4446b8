"""Fuel nodes by role: the filters of the older tool's config (`storage>80G`, `ram>=16G`,
`cpus>4`, `mac=...`), parsed at validation, and the choice of free nodes that match them."""

import re
from dataclasses import dataclass
from typing import Any

from benchbed.errors import ConfigError
from benchbed.plugin import join_path
from benchbed.settings import Section, setting

FILTER_PATTERN = re.compile(r"^(ram|cpus|storage|mac)\s*(==|!=|<=|>=|<|>|=)\s*(\S+)$")
SIZE_PATTERN = re.compile(r"^(\d+)([KMGT]?)$")
MAC_PATTERN = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$", re.I)
FACTORS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
COMPARE = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<=": lambda a, b: a <= b,
           ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, ">": lambda a, b: a > b}


@dataclass(frozen=True, kw_only=True)
class NodeGroup(Section):
    """The nodes of one role group (`controller`, `cinder+compute`) of FuelEngine's config."""

    amount: int = setting("How many nodes this group takes.", minimum=1, maximum=1000)
    filters: list[str] = setting("Conditions every node of the group meets, e.g. storage>80G, "
                                 "ram>=16G, cpus>4, mac=52:54:00:12:34:56.", [],
                                 uniqueItems=True, items={"type": "string", "maxLength": 100})


@dataclass(frozen=True)
class NodeFilter:
    """One parsed filter such as `storage>80G`; `text` is what the user wrote."""

    text: str
    attribute: str
    operator: str
    value: int | str

    def matches(self, node: dict[str, Any]) -> bool:
        return COMPARE[self.operator](node_value(node, self.attribute), self.value)


def parse_filter(text: str, path: str) -> NodeFilter:
    """`ram>=16G`, `cpus>4`, `storage>80G`, `mac=...`; anything else is a ConfigError."""
    found = FILTER_PATTERN.match(text.strip())
    if not found:
        raise ConfigError(path, f"malformed filter {text!r} (expected ram|cpus|storage|mac, "
                                f"an operator ==, !=, <, <=, >, >=, and a value, e.g. storage>80G)")
    attribute, operator, raw = found.groups()
    operator = "==" if operator == "=" else operator
    if attribute == "mac":
        if operator not in ("==", "!=") or not MAC_PATTERN.match(raw):
            raise ConfigError(path, f"malformed filter {text!r}: mac takes == or != and an "
                                    f"address like 52:54:00:12:34:56")
        return NodeFilter(text, attribute, operator, raw.lower())
    size = SIZE_PATTERN.match(raw)
    if not size or (attribute == "cpus" and size.group(2)):
        unit = "a whole number" if attribute == "cpus" else "a number with K, M, G or T"
        raise ConfigError(path, f"malformed filter {text!r}: {attribute} takes {unit}")
    return NodeFilter(text, attribute, operator, int(size.group(1)) * FACTORS[size.group(2)])


def node_value(node: dict[str, Any], attribute: str) -> int | str:
    """A discovered node's RAM and storage in bytes, CPU count, or MAC, from its `meta`."""
    meta = node.get("meta") or {}
    if attribute == "ram":
        return int((meta.get("memory") or {}).get("total") or 0)
    if attribute == "storage":
        return sum(int(disk.get("size") or 0) for disk in meta.get("disks") or [])
    if attribute == "cpus":
        return int((meta.get("cpu") or {}).get("total") or 0)
    return str(node.get("mac") or "").lower()


def role_filters(nodes: dict[str, NodeGroup], path: str = "") -> dict[str, list[NodeFilter]]:
    """The parsed filters of every role group; `path` is the engine's config path."""
    return {role: [parse_filter(text, join_path(path, f"nodes.{role}.filters", index))
                   for index, text in enumerate(group.filters)]
            for role, group in nodes.items()}


def choose_nodes(nodes: dict[str, NodeGroup], free: list[dict[str, Any]], path: str = ""
                 ) -> dict[str, list[dict[str, Any]]]:
    """Free nodes for every role group; a group short of nodes is refused with the reason.

    Groups with the fewest candidates choose first, so that a broad filter does not take
    the nodes a narrow one needs.
    """
    filters = role_filters(nodes, path)
    candidates = {role: [n for n in free if all(f.matches(n) for f in filters[role])]
                  for role in filters}
    taken: set[int] = set()
    chosen: dict[str, list[dict[str, Any]]] = {}
    for role in sorted(filters, key=lambda r: len(candidates[r]) - nodes[r].amount):
        amount = nodes[role].amount
        available = [n for n in candidates[role] if n["id"] not in taken]
        if len(available) < amount:
            raise ConfigError(join_path(path, f"nodes.{role}"), _shortage(
                role, amount, free, filters[role], candidates[role], available))
        chosen[role] = sorted(available, key=lambda n: n["id"])[:amount]
        taken.update(n["id"] for n in chosen[role])
    return chosen


def _shortage(role: str, amount: int, free: list[dict], filters: list[NodeFilter],
              matching: list[dict], available: list[dict]) -> str:
    excluded = []
    for node_filter in filters:
        count = sum(1 for n in free if not node_filter.matches(n))
        if count:
            excluded.append(f"{node_filter.text} excluded {count}")
    taken = len(matching) - len(available)
    reasons = ", ".join(excluded + ([f"{taken} taken by other roles"] if taken else []))
    return (f"{amount} {role} node(s) needed, {len(available)} of {len(free)} free node(s) "
            f"available" + (f" ({reasons})" if reasons else ""))
