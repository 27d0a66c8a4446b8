"""DevstackEngine's reading of stack.sh output: the one line a failure gives; its typed
config; the install step that DebianEngine shares with it."""

from pathlib import Path

import pytest

from benchbed.deployment import Deployment
from benchbed.engines.devstack import DEFAULT_BRANCH, DEFAULT_DISABLED, DevstackEngine, _Run
from benchbed.engines.steps import DeployStepError, server_step
from benchbed.server import Server

SERVERS = {"type": "ExistingServers", "credentials": [{"host": "10.0.0.2", "user": "root"}]}

# The end of a real failing stack.sh (stable/2025.1, pip could not resolve a package).
FAILED = """\
+ ./stack.sh:main:842                      :   pip_install -U os-testr
Using python 3 to install os-testr
+ inc/python:pip_install:227               :   env http_proxy= https_proxy= no_proxy= \
PIP_FIND_LINKS= /opt/stack/data/venv/bin/pip install -U os-testr
ERROR: Cannot install os-testr because these package versions have conflicting dependencies.
ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/
+ inc/python:pip_install:1                 :   exit_trap
+ ./stack.sh:exit_trap:543                 :   local r=1
+ ./stack.sh:exit_trap:561                 :   echo 'Error on exit'
Error on exit
"""


def _run(text: str, state: str) -> _Run:
    run = _Run(Server(host="10.0.0.5"))
    for chunk in (text[:100], text[100:]):  # lines split across polls are joined again
        run.feed(chunk)
    run.state = state
    return run


def test_failure_names_server_function_command_and_last_lines() -> None:
    line = _run(FAILED, "1").failure(3600)
    assert "\n" not in line
    assert line.startswith("root@10.0.0.5:22: step 'stack.sh' failed: stack.sh exited 1 in "
                           "pip_install (inc/python:227: env http_proxy=")
    assert "ERROR: ResolutionImpossible" in line


def test_timeout_and_lost_runs_say_so() -> None:
    assert "did not finish within stack_timeout 60 s" in _run(FAILED, "timeout").failure(60)
    assert "ended without an exit code" in _run("", "lost").failure(60)


def test_defaults_live_in_the_typed_config_and_localrc_is_local_conf() -> None:
    config = DevstackEngine.parse_config({"type": "DevstackEngine", "provider": SERVERS,
                                          "localrc": {"VIRT_DRIVER": "fake"}})
    assert (config.devstack_branch, config.stack_timeout) == (DEFAULT_BRANCH, 3600)
    assert config.local_conf is None and config.enable_plugin == {}
    assert config.local_settings() == {"VIRT_DRIVER": "fake"}


def test_default_services_off_unless_the_config_chooses_enabled_services() -> None:
    def disabled(**engine: object) -> list[str]:
        return DevstackEngine.parse_config({"type": "DevstackEngine", "provider": SERVERS,
                                            **engine}).disabled_services()

    assert disabled(local_conf={"VIRT_DRIVER": "fake"}) == DEFAULT_DISABLED
    assert disabled(localrc={"ENABLED_SERVICES": "key,mysql,horizon"}) == []
    assert disabled(local_conf={"ENABLED_SERVICES+": ",c-api"}) == []
    assert disabled(disable_service=["tempest"], local_conf={"ENABLED_SERVICES": "key"}) \
        == ["tempest"]
    assert disabled(disable_service=[]) == []


def test_a_failed_step_names_server_and_step_on_one_line(home: Path) -> None:
    deployment = Deployment.create("steps", {"type": "DevstackEngine", "provider": SERVERS})
    server = Server(host="10.0.0.5")
    with pytest.raises(DeployStepError) as failed, \
            server_step(deployment, server, "clone devstack"):
        raise RuntimeError("root@10.0.0.5:22: fatal: no such branch\n  hint: check it\n")
    assert str(failed.value) == ("root@10.0.0.5:22: step 'clone devstack' failed: "
                                 "fatal: no such branch; hint: check it")


@pytest.mark.parametrize(("services", "idle"), [
    (None, []),
    ("key,mysql", []),
    ("n-cpu,placement-client,ovn-controller,ovs-vswitchd,ovsdb-server",
     ["haproxy.service", "apache2.service", "ovn-central.service", "ovn-northd.service",
      "ovn-ovsdb-server-nb.service", "ovn-ovsdb-server-sb.service",
      "ovn-controller-vtep.service"]),
    ("key,ovn-northd,ovn-controller,ovn-controller-vtep",
     ["haproxy.service", "apache2.service"])])
def test_idle_units_are_what_the_chassis_packages_start_and_no_service_here_uses(
        services: str | None, idle: list[str]) -> None:
    from benchbed.engines.devstack import DevstackEngineConfig, idle_units

    local = {"VIRT_DRIVER": "fake"} if services is None else {"ENABLED_SERVICES": services}
    config = DevstackEngineConfig(type="DevstackEngine", provider={}, local_conf=local)
    assert idle_units(config) == idle
