"""The plugin contract (benchbed.contract): every installed plugin passes it, and it catches
each rule a plugin can break, with a message that names the rule."""

import dataclasses
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from benchbed import contract, plugin
from benchbed.deployment import Deployment
from benchbed.engines.base import CheckResult, Engine
from benchbed.ledger import Resource
from benchbed.plugin import ResourceKind
from benchbed.providers.base import Capabilities, ServerProvider
from benchbed.server import Server
from benchbed.settings import PluginConfig, Section, setting

EXAMPLE_PROVIDER = (Path(__file__).resolve().parents[2] / "examples" /
                    "benchbed-example-provider" / "benchbed_example_provider" / "__init__.py")


@pytest.mark.parametrize(("group", "name"), contract.registered_plugins(),
                         ids=[name for _, name in contract.registered_plugins()])
def test_every_installed_plugin_keeps_the_contract(group: str, name: str, home: Path) -> None:
    contract.check_plugin(plugin.get(group, name))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Disk(Section):
    size: int = setting("Size in GiB.", 1, minimum=1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BoxesConfig(PluginConfig):
    amount: int = setting("How many boxes.", 1, minimum=1)
    disks: list[Disk] = setting("The boxes' disks.")


class Boxes(ServerProvider[BoxesConfig]):
    """A converted provider that keeps the contract."""

    Config = BoxesConfig
    CAPABILITIES = Capabilities(shares_host=True, chooses_image=False, chooses_size=False)
    EXAMPLE = {"type": "Boxes", "amount": 2, "disks": [{"size": 3}]}

    def create_servers(self, image_uuid: str | None = None, type_id: str | None = None,
                       amount: int = 1) -> list[Server]:
        return []

    def _delete_box(self, resource: Resource) -> None:
        pass

    def _box_exists(self, resource: Resource) -> bool:
        return False

    RESOURCES = {"box": ResourceKind(delete=_delete_box, exists=_box_exists)}


@dataclasses.dataclass(frozen=True, kw_only=True)
class NothingConfig(PluginConfig):
    greeting: str = setting("What deploy returns.", "hello")


class Nothing(Engine[NothingConfig]):
    """A converted engine that keeps the contract."""

    Config = NothingConfig
    EXAMPLE = {"type": "Nothing"}

    def deploy(self) -> dict[str, Any]:
        return {"greeting": self.config.greeting}

    def check(self) -> list[CheckResult]:
        return []


def test_a_converted_provider_and_engine_keep_it(home: Path) -> None:
    contract.check_plugin(Boxes)
    contract.check_plugin(Nothing)


def test_it_runs_on_a_deployment_given(database: str) -> None:
    deployment = Deployment.create("given", {"type": "Nothing"})
    contract.check_plugin(Boxes, deployment)
    assert deployment.remaining_resources() == 0


def test_it_runs_without_a_home_and_restores_the_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BENCHBED_HOME", str(tmp_path / "mine"))
    contract.check_plugin(Boxes)
    import os

    assert os.environ["BENCHBED_HOME"] == str(tmp_path / "mine")
    assert not (tmp_path / "mine").exists()


def test_the_example_provider_keeps_it(home: Path) -> None:
    spec = importlib.util.spec_from_file_location("benchbed_example_provider", EXAMPLE_PROVIDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("benchbed_example_provider", module)
    spec.loader.exec_module(module)
    contract.check_plugin(module.LoopbackSshd)


test_contract_helper = contract.contract_test(Boxes, Nothing)


def broken(**attributes: Any) -> type[Boxes]:
    return type("Broken", (Boxes,), attributes)


def violations(plugin_class: type[Any]) -> str:
    with pytest.raises(AssertionError) as caught:
        contract.check_plugin(plugin_class)
    return str(caught.value)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Undescribed(PluginConfig):
    amount: int = dataclasses.field(default=1)
    disks: list[Disk] = setting("Disks.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BadDisk(Section):
    size: int = 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class NestedUndescribed(PluginConfig):
    disks: list[BadDisk] = setting("Disks.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Unschemable(PluginConfig):
    when: complex = setting("A type configs cannot hold.", 1j)


class Elsewhere:
    def delete(self, resource: Resource) -> None:
        pass


@pytest.mark.parametrize(("attributes", "message"), [
    ({"CONFIG_SCHEMA": {"type": "object"}}, "still declares CONFIG_SCHEMA"),
    ({"Config": PluginConfig}, "Config is PluginConfig itself"),
    ({"Config": dict}, "must be a PluginConfig dataclass"),
    ({"Config": Undescribed}, "config key 'amount' has no description"),
    ({"Config": NestedUndescribed}, "config key 'disks.size' has no description"),
    ({"Config": Unschemable}, "Config.json_schema() does not load"),
    ({"RESOURCES": {"box": "_delete_box"}}, "RESOURCES['box'] is not a ResourceKind"),
    ({"RESOURCES": {"box": ResourceKind(delete=Elsewhere.delete)}},
     "RESOURCES['box'].delete (<function Elsewhere.delete"),
    ({"RESOURCES": {"box": ResourceKind(delete=Boxes._delete_box, requires=("disk",))}},
     "requires 'disk', which is not a declared kind"),
    ({"CAPABILITIES": "fast"}, "CAPABILITIES must be a Capabilities"),
])
def test_each_rule_is_named(attributes: dict[str, Any], message: str) -> None:
    assert message in violations(broken(**attributes))


def test_an_example_is_required_and_must_validate(home: Path) -> None:
    class NoExample(ServerProvider[BoxesConfig]):
        Config = BoxesConfig
        CAPABILITIES = Capabilities()

        def create_servers(self, image_uuid: str | None = None, type_id: str | None = None,
                           amount: int = 1) -> list[Server]:
            return []

    assert "declares no EXAMPLE" in violations(NoExample)
    assert "EXAMPLE does not validate: config provider.amount: 0 is less" in violations(
        broken(EXAMPLE={"type": "Boxes", "amount": 0, "disks": []}))


def test_a_plugin_that_drops_unknown_rows_is_caught(home: Path) -> None:
    def delete_recorded(self: Boxes) -> None:
        for row in self.ledger.resources():
            self.ledger.forget(row)

    found = violations(broken(delete_recorded=delete_recorded))
    assert "accepted a ledger row of the undeclared kind" in found
    assert "a ledger row of an undeclared kind was dropped" in found


def test_a_teardown_that_fails_or_records_on_an_empty_ledger_is_caught(home: Path) -> None:
    def failing(self: Boxes) -> None:
        raise RuntimeError("no servers to stop")

    def recording(self: Boxes) -> None:
        self.ledger.record("box", "left-over")

    assert "teardown() of an empty ledger raised RuntimeError" in violations(
        broken(teardown=failing))
    assert "teardown() of an empty ledger left 1 ledger row(s)" in violations(
        broken(teardown=recording))


def test_a_hook_named_by_a_string_is_refused_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match="functions of the plugin"):
        ResourceKind(delete="_delete_box")  # type: ignore[arg-type]
