"""local.conf rendering, read back by real bash and by DevStack's own merge_config_file."""

import re
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchbed import plugin
from benchbed.engines import devstack_conf
from benchbed.errors import ConfigError
from tests import upstream

HOSTILE = ["$(touch /tmp/pwned)", "`id`", "a'b", 'a"b', "a\\b", "x; rm -rf /", "$HOME",
           "line1\nline2", "[[post-config|/etc/passwd]]", "tab\there", "!event", "*", "~root",
           "", " lead", "trail ", "ünïcödé", "\x01ctl", "${PATH:0:1}", "a\\", "'"]


def _bash_reads(text: str, names: list[str]) -> dict[str, str]:
    """Source `text` the way DevStack sources its localrc and print each variable."""
    script = text + "".join(f'printf "%s\\0" "${name}"\n' for name in names)
    result = subprocess.run(["bash", "-c", script], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return dict(zip(names, result.stdout.decode().split("\0")[:-1], strict=True))


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_value_arrives_literally(value: str) -> None:
    rendered = devstack_conf.render({"V": value})
    local = rendered.split("\n", 1)[1]
    assert _bash_reads(local, ["V"]) == {"V": value}
    assert len(local.strip().splitlines()) == 1  # no value starts a section of its own


@settings(max_examples=400)  # each run new text, from the run's printed seed
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")))
def test_any_text_arrives_literally(value: str) -> None:
    local = devstack_conf.render({"V": value}).split("\n", 1)[1]
    assert _bash_reads(local, ["V"]) == {"V": value}


def test_plus_form_appends_and_scalars_as_devstack_spells_them() -> None:
    rendered = devstack_conf.render({"ENABLED_SERVICES": "key", "ENABLED_SERVICES+": ",-n-cpu",
                                     "DEBUG": True, "WORKERS": 2})
    assert "ENABLED_SERVICES+=',-n-cpu'" in rendered
    local = rendered.split("\n", 1)[1]
    assert _bash_reads(local, ["ENABLED_SERVICES", "DEBUG", "WORKERS"]) == {
        "ENABLED_SERVICES": "key,-n-cpu", "DEBUG": "True", "WORKERS": "2"}


def test_plugins_and_post_config_blocks() -> None:
    rendered = devstack_conf.render({}, plugins={"heat": "git://10.0.0.1/openstack/heat master"},
                                    post_config={"$NOVA_CONF": {"DEFAULT": {"debug": True}}})
    assert "enable_plugin heat 'git://10.0.0.1/openstack/heat' 'master'" in rendered
    assert "[[post-config|$NOVA_CONF]]\n[DEFAULT]\ndebug = True\n" in rendered


@pytest.fixture(scope="module")
def meta_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DevStack's own inc/meta-config and inc/ini-config, from the upstream repository."""
    work = tmp_path_factory.mktemp("devstack")
    with tarfile.open(upstream.tarballs() / "devstack.git.tar") as tar:
        tar.extractall(work, filter="data")
    checkout = work / "checkout"
    subprocess.run(["git", "clone", "-q", str(work / "devstack.git"), str(checkout)],
                   check=True, timeout=120)
    return checkout


@pytest.mark.parametrize("value", ['$(touch /tmp/pwned-bb)', "`id`", 'say "hi"', "$HOME",
                                   "a&b|c", "x; y", "'quoted'", "100%", "a b"])
def test_post_config_value_arrives_literally_through_devstack(meta_config: Path,
                                                               tmp_path: Path,
                                                               value: str) -> None:
    conf = tmp_path / "local.conf"
    target = tmp_path / "service.conf"
    conf.write_text(devstack_conf.render(
        {}, post_config={str(target): {"DEFAULT": {"option": value}}}))
    script = (f"source {meta_config}/inc/ini-config; source {meta_config}/inc/meta-config; "
              f"CONFIG_AWK_CMD=gawk; merge_config_group {conf} post-config; "
              f"iniget {target} DEFAULT option")
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                            timeout=30, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == value + "\n"
    assert not Path("/tmp/pwned-bb").exists()


def test_default_services_through_devstack_stackrc(meta_config: Path, tmp_path: Path) -> None:
    """DevStack's own stackrc and disable_service: the default off list leaves a whole cloud
    (Nova, Neutron with OVN, Glance, Placement) without Cinder, Horizon, Tempest, noVNC."""
    from benchbed.engines.devstack import DEFAULT_DISABLED

    localrc = tmp_path / "localrc"
    localrc.write_text(devstack_conf.render({}, disabled=DEFAULT_DISABLED).split("\n", 1)[1])
    default = re.search(r"if ! isset ENABLED_SERVICES ; then\n(.*?)\nfi\n",
                        (meta_config / "stackrc").read_text(), re.S)
    assert default
    script = (f"source {meta_config}/functions-common; {default[1]}\n"
              f"source {localrc}; echo $ENABLED_SERVICES")
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    enabled = set(result.stdout.strip().split(","))
    assert {"key", "g-api", "placement-api", "n-api", "n-cpu", "q-svc", "ovn-northd",
            "ovn-controller", "mysql", "rabbit"} <= enabled
    assert enabled.isdisjoint({"c-api", "c-vol", "horizon", "tempest", "n-novnc", "etcd3"})


def _check(config: dict) -> None:
    plugin.validate({"type": "DevstackEngine", "git_base": "git://10.0.0.1",
                     "provider": {"type": "ExistingServers",
                                  "credentials": [{"host": "10.0.0.2", "user": "root"}]},
                     **config})


@pytest.mark.parametrize(("config", "path"), [
    ({"local_conf": {"BAD-KEY": "x"}}, "local_conf.BAD-KEY"),
    ({"local_conf": {"$(id)": "x"}}, "local_conf.$(id)"),
    ({"localrc": {"A": {"nested": 1}}}, "localrc.A"),
    ({"local_conf": {"A": "1"}, "localrc": {"B": "2"}}, "localrc"),
    ({"post_config": {"$(id)": {"DEFAULT": {"a": "b"}}}}, "post_config.$(id)"),
    ({"post_config": {"$NOVA_CONF": {"DEF AULT": {"a": "b"}}}}, "post_config.$NOVA_CONF.DEF AULT"),
    ({"post_config": {"$NOVA_CONF": {"DEFAULT": {"a": "*"}}}}, "post_config.$NOVA_CONF.DEFAULT.a"),
    ({"post_config": {"$NOVA_CONF": {"DEFAULT": {"a": "x\ny"}}}},
     "post_config.$NOVA_CONF.DEFAULT.a"),
    ({"enable_plugin": {"heat": "a b c"}}, "enable_plugin.heat"),
    ({"devstack_branch": "--upload-pack=touch /tmp/x"}, "devstack_branch"),
    ({"devstack_repo": "-oProxyCommand=x"}, "devstack_repo"),
    ({"git_mirror": "/srv/git"}, ""),
    ({"stack_timeout": 5}, "stack_timeout"),
    ({"disable_service": ["$(id)"]}, "disable_service[0]"),
])
def test_bad_input_names_the_config_path(config: dict, path: str) -> None:
    with pytest.raises(ConfigError) as raised:
        _check(config)
    assert raised.value.path == path, raised.value


def test_localrc_still_accepted_with_a_warning() -> None:
    with pytest.warns(FutureWarning, match="localrc"):
        _check({"localrc": {"ADMIN_PASSWORD": "secret"}})


@pytest.mark.parametrize("script", ["benchbed/scripts/devstack/guest.sh",
                                    "benchbed/scripts/hostnet/mirrors.sh"])
def test_scripts_pass_shellcheck(script: str) -> None:
    result = subprocess.run(["shellcheck", "-s", "sh", script], capture_output=True, text=True,
                            cwd=upstream.ROOT, timeout=60)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(("services", "neutron", "metadata_agent"), [
    ("n-cpu,placement-client,ovn-controller,ovs-vswitchd,ovsdb-server", True, False),
    ("n-cpu,placement-client,ovn-controller,ovs-vswitchd,ovsdb-server,q-ovn-metadata-agent",
     True, True),
    ("n-cpu,placement-client", False, False)])
def test_a_chassis_without_the_metadata_agent_still_stacks_neutron(
        meta_config: Path, tmp_path: Path, services: str, neutron: bool,
        metadata_agent: bool) -> None:
    """DevStack's own is_service_enabled and is_neutron_enabled on the local.conf benchbed
    writes: OVN's chassis asked for without a Neutron service still gets Neutron (and so
    OVN), and no metadata agent; other service lists are left as given."""
    from benchbed.engines.devstack import DevstackEngineConfig, render_local_conf

    config = DevstackEngineConfig(type="DevstackEngine", provider={},
                                  local_conf={"ENABLED_SERVICES": services})
    localrc = tmp_path / "localrc"
    localrc.write_text(render_local_conf(config, "10.0.0.2", {"git_base": ""}, {}
                                         ).split("\n", 1)[1])
    lib_neutron = re.search(r"\nfunction is_neutron_enabled \{\n.*?\n\}\n",
                            (meta_config / "lib" / "neutron").read_text(), re.S)
    assert lib_neutron
    script = (f"source {meta_config}/functions-common; {lib_neutron[0]}\n"
              f"source {localrc}; is_service_enabled neutron && echo neutron; "
              f"is_service_enabled q-ovn-metadata-agent && echo metadata; "
              f"is_service_enabled ovn-controller && echo chassis; echo $ENABLED_SERVICES")
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    *said, enabled = result.stdout.split()
    assert ("neutron" in said, "metadata" in said) == (neutron, metadata_agent), said
    assert set(services.split(",")) <= set(enabled.split(","))
    assert enabled == services or (neutron and not metadata_agent)
