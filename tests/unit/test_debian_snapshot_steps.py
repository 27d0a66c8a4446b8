"""DebianEngine's cheap re-run steps, as on a server started from a snapshot: a bootstrapped
Keystone gets its new admin password and address by SQL (no keystone-manage), and a started
service is waited for when a later step needs it, at the latest after the next recipe."""

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from benchbed.deployment import Deployment
from benchbed.engines import debian
from benchbed.engines.debian_services import Context, Recipe, keystone
from benchbed.errors import BenchbedError
from benchbed.scale import ControlPlane
from benchbed.server import Server

URL = "http://192.0.2.7:5000/v3/"
HASHED = "$2b$12$" + "a" * 53


@dataclass
class FakeShell:
    """Answers `mysql` with the bootstrap counts and python3 with a bcrypt hash."""

    counts: str
    calls: list[tuple[Any, str | None]] = field(default_factory=list)

    def run(self, command: Any, *, timeout: float = 0, stdin: str | None = None,
            check: bool = True) -> SimpleNamespace:
        self.calls.append((command, stdin))
        if isinstance(command, str) and command.startswith("mysql") and "SELECT" in (stdin or ""):
            return SimpleNamespace(stdout=self.counts)
        if isinstance(command, list) and command[0] == "python3":
            return SimpleNamespace(stdout=HASHED + "\n")
        return SimpleNamespace(stdout="")


def _context(counts: str, region: str = "RegionOne") -> tuple[Context, FakeShell]:
    shell = FakeShell(counts)
    server = SimpleNamespace(ssh=shell)
    return Context(server=server, address="192.0.2.7", region=region,  # type: ignore[arg-type]
                   passwords={"admin": "new-admin-password"},
                   step=lambda _name, _detail: None,
                   control_plane=ControlPlane(1, 1, 4, 151)), shell


def test_a_bootstrapped_keystone_gets_its_password_and_address_by_sql() -> None:
    ctx, shell = _context("1\n3\n")
    keystone.bootstrap(ctx, URL)
    commands = [command for command, _ in shell.calls]
    assert not any("keystone-manage" in command for command in commands
                   if isinstance(command, list))
    hashing = next(stdin for command, stdin in shell.calls if command[0] == "python3")
    assert hashing == "new-admin-password\n"  # on stdin, never on a command line
    update = shell.calls[-1][1] or ""
    assert f"password_hash = '{HASHED}'" in update and f"url = '{URL}'" in update
    assert "region_id = 'RegionOne'" in update
    assert all("new-admin-password" not in str(command) for command in commands)


def test_a_keystone_not_yet_bootstrapped_runs_keystone_manage() -> None:
    ctx, shell = _context("1\n0\n")
    keystone.bootstrap(ctx, URL)
    manage = [command for command, _ in shell.calls
              if isinstance(command, list) and "keystone-manage" in command]
    assert len(manage) == 1 and URL in manage[0]
    assert not any(isinstance(command, list) and command[0] == "python3"
                   for command, _ in shell.calls)


@pytest.mark.parametrize(("region", "url"), [("Region'One", URL),
                                             ("RegionOne", "http://x';--:5000/v3/")])
def test_values_that_cannot_go_into_sql_are_refused(region: str, url: str) -> None:
    ctx, shell = _context("1\n3\n", region)
    with pytest.raises(BenchbedError, match="cannot go into SQL"):
        keystone.bootstrap(ctx, url)
    assert shell.calls == []


def test_a_started_service_is_waited_for_once_at_the_latest_after_the_next_recipe(
        monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    events: list[str] = []

    def recipe(name: str) -> Recipe:
        def configure(ctx: Context) -> None:
            events.append(f"{name} start")
            if name == "keystone":
                ctx.outputs["auth_url"] = "http://192.0.2.7:5000/v3"
                ctx.waiting["keystone"] = lambda: events.append("keystone wait")
            if name == "glance":
                ctx.waiting["glance"] = lambda: events.append("glance wait")
            events.append(f"{name} end")

        return Recipe(name=name, packages=(), preseed=(), paths=(), services=(name,),
                      configure=configure)

    recipes = {name: recipe(name) for name in ("mariadb", "keystone", "glance")}
    monkeypatch.setattr(debian, "recipes", lambda: recipes)
    for name in ("check", "record_baseline"):
        monkeypatch.setattr(debian.apt, name, lambda *_args, **_kwargs: None)
    monkeypatch.setattr(debian.apt, "missing", lambda _server, _packages: [])
    deployment = Deployment.create("waits", {"type": "DebianEngine", "provider": {
        "type": "ExistingServers", "credentials": [{"user": "root", "host": "192.0.2.7"}]}})
    debian.DebianEngine(deployment)._install(Server(host="192.0.2.7"))
    assert events == ["mariadb start", "mariadb end", "keystone start", "keystone end",
                      "glance start", "glance end", "keystone wait", "glance wait"]
