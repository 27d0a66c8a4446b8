"""DevstackEngine as a MultihostEngine's controller and node, as the older tool's multihost
samples use it: the node's local.conf, read back by real bash, points at the controller."""

import subprocess
from pathlib import Path
from typing import Any

import pytest

from benchbed import api, plugin
from benchbed.deployment import Deployment
from benchbed.engines.base import Engine
from benchbed.engines.devstack import PASSWORD_KEYS, DevstackEngine, render_local_conf
from benchbed.engines.multihost import MultihostEngine, substitute
from benchbed.errors import ConfigError

CONTROLLER_IP = "10.254.203.10"
NODE_IP = "10.254.203.11"
NODE_CONF = {"ENABLED_SERVICES": "n-cpu,placement-client", "VIRT_DRIVER": "fake",
             "SERVICE_HOST": "{controller_ip}", "MYSQL_HOST": "{controller_ip}",
             "RABBIT_HOST": "{controller_ip}", "GLANCE_HOSTPORT": "{controller_ip}:9292",
             "SCREEN_LOGDIR": "${DEST}/logs/screen"}


def _servers(address: str) -> dict[str, Any]:
    return {"type": "ExistingServers", "credentials": [{"host": address, "user": "root"}]}


def _multihost(node_conf: dict[str, Any]) -> dict[str, Any]:
    return {"type": "MultihostEngine",
            "controller": {"type": "DevstackEngine", "git_mirror": "/srv/git",
                           "local_conf": {"ENABLED_SERVICES+": ",-n-cpu", "MULTI_HOST": 1},
                           "provider": _servers(CONTROLLER_IP)},
            "nodes": [{"type": "DevstackEngine", "git_mirror": "/srv/git",
                       "local_conf": node_conf, "provider": _servers(NODE_IP)}]}


def _bash_reads(local_conf: str, names: list[str]) -> dict[str, str]:
    """The [[local|localrc]] section sourced by bash, as DevStack sources it."""
    localrc = local_conf.split("\n", 1)[1]
    script = localrc + "".join(f'printf "%s\\0" "${name}"\n' for name in names)
    result = subprocess.run(["bash", "-c", script], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return dict(zip(names, result.stdout.decode().split("\0")[:-1], strict=True))


def test_the_sample_shape_validates(home: Path) -> None:
    api.validate(_multihost(NODE_CONF))


DEBIAN_CONTROLLER = {"type": "DebianEngine", "services": ["keystone", "glance", "placement",
                                                       "neutron", "nova"],
                     "provider": _servers(CONTROLLER_IP)}


@pytest.mark.parametrize("node", [
    {"type": "DevstackEngine", "git_mirror": "/srv/git", "local_conf": NODE_CONF,
     "provider": _servers(NODE_IP)},
    {"type": "LxcEngine", "nodes_per_server": 2, "distribution": "debian",
     "engine": {"name": "DevstackEngine", "git_mirror": "/srv/git", "local_conf": NODE_CONF},
     "provider": _servers(NODE_IP)},
], ids=["node", "lxc-template"])
def test_a_devstack_node_under_another_controller_is_refused(home: Path,
                                                            node: dict[str, Any]) -> None:
    """It would fail after the controller's install, at nova-manage as DevStack's user."""
    config = {"type": "MultihostEngine", "controller": DEBIAN_CONTROLLER, "nodes": [node]}
    with pytest.raises(ConfigError) as refused:
        api.validate(config)
    assert str(refused.value) == (
        "config nodes[0]: joins the controller's devstack, which the controller does not run "
        "(it offers glance, keystone, neutron, nova, placement)")
    assert api.list_deployments() == []


def test_a_debian_node_under_a_devstack_controller_is_refused(home: Path) -> None:
    config = _multihost(NODE_CONF)
    config["nodes"] = [{"type": "DebianEngine", "services": ["nova-compute"],
                        "provider": _servers(NODE_IP)}]
    with pytest.raises(ConfigError) as refused:
        api.validate(config)
    assert str(refused.value) == ("config nodes[0]: joins the controller's keystone, nova, "
                                  "which the controller does not run (it offers devstack)")


def test_a_whole_devstack_cloud_joins_nothing() -> None:
    whole = DevstackEngine.parse_config({"type": "DevstackEngine", "local_conf": {
        "VIRT_DRIVER": "fake"}, "provider": _servers(NODE_IP)})
    assert DevstackEngine.joined_services(whole) == frozenset()
    assert DevstackEngine.offered_services(whole) == {"devstack"}


def test_a_misspelt_placeholder_is_refused_naming_the_key(home: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        api.validate(_multihost({**NODE_CONF, "MYSQL_HOST": "{controler_ip}"}))
    assert str(refused.value).startswith("config nodes[0].local_conf.MYSQL_HOST: ")


def test_node_local_conf_points_at_the_controller_with_its_passwords(home: Path) -> None:
    config = _multihost(NODE_CONF)
    deployment = Deployment.create("mh", config)
    multihost = plugin.build(deployment, config, Engine, plugin.ENGINES, "")
    assert isinstance(multihost, MultihostEngine)
    controller_passwords = {key: f"controller-{key.lower()}" for key in PASSWORD_KEYS}
    controller_endpoints = {"servers": [{"host": CONTROLLER_IP}],
                            "devstack": {"passwords": controller_passwords}}
    node = multihost._node("nodes[0]", substitute(config["nodes"][0], CONTROLLER_IP),
                           controller_endpoints)
    assert isinstance(node, DevstackEngine)
    passwords = node._passwords()
    assert passwords == controller_passwords
    source = {"git_base": "git://10.254.203.1", "repo": "", "index": ""}
    rendered = render_local_conf(node.config, NODE_IP, source, passwords)
    assert "{controller_ip}" not in rendered
    read = _bash_reads(rendered, ["HOST_IP", "SERVICE_HOST", "MYSQL_HOST", "RABBIT_HOST",
                                  "GLANCE_HOSTPORT", "ENABLED_SERVICES", "SCREEN_LOGDIR",
                                  *PASSWORD_KEYS])
    assert read == {"HOST_IP": NODE_IP, "SERVICE_HOST": CONTROLLER_IP,
                    "MYSQL_HOST": CONTROLLER_IP, "RABBIT_HOST": CONTROLLER_IP,
                    "GLANCE_HOSTPORT": f"{CONTROLLER_IP}:9292",
                    "ENABLED_SERVICES": "n-cpu,placement-client",
                    # shell syntax stays literal: DevStack's own ${DEST} is not expanded
                    "SCREEN_LOGDIR": "${DEST}/logs/screen", **controller_passwords}


def test_a_node_password_in_local_conf_wins_over_the_controllers(home: Path) -> None:
    config = _multihost({**NODE_CONF, "ADMIN_PASSWORD": "node-given"})
    deployment = Deployment.create("mh", config)
    multihost = plugin.build(deployment, config, Engine, plugin.ENGINES, "")
    assert isinstance(multihost, MultihostEngine)
    node = multihost._node("nodes[0]", substitute(config["nodes"][0], CONTROLLER_IP),
                           {"devstack": {"passwords": {"ADMIN_PASSWORD": "controller"}}})
    assert isinstance(node, DevstackEngine)
    passwords = node._passwords()
    assert passwords["ADMIN_PASSWORD"] == "node-given"
    assert len(passwords["DATABASE_PASSWORD"]) == 32  # the controller gave none: generated


def test_a_node_waits_for_its_computes_and_the_controller_maps_them_into_its_cell(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DevStack leaves discover_hosts to whoever stacks the nodes: the node waits for every
    host it lists to be up, and the controller (servers[0] of its endpoints) discovers them,
    once for the deployment."""
    from benchbed.engines import devstack
    from benchbed.engines.debian_services import nova_compute
    from benchbed.server import Server

    config = _multihost(NODE_CONF)
    deployment = Deployment.create("mh", config)
    multihost = plugin.build(deployment, config, Engine, plugin.ENGINES, "")
    assert isinstance(multihost, MultihostEngine)
    cloud = {"auth_url": f"http://{CONTROLLER_IP}/identity", "region_name": "RegionOne",
             "admin": {"password": "admin-secret"}}
    node = multihost._node("nodes[0]", substitute(config["nodes"][0], CONTROLLER_IP),
                           {"servers": [{"host": CONTROLLER_IP, "user": "root"}],
                            "openstack": cloud})
    assert isinstance(node, DevstackEngine)
    guest_calls: list[tuple[str, tuple[str, ...]]] = []

    def guest(server: Server, *args: str, timeout: float = 120) -> str:
        guest_calls.append((server.host, args))
        return {"computes": f"{server.host}-node1\n"}.get(args[0], "")

    joined: list[tuple[str, list[str]]] = []

    def join(catalogue: Any, region: str, hosts: list[str]) -> None:
        joined.append((region, hosts))

    monkeypatch.setattr(node, "_guest", guest)
    monkeypatch.setattr(nova_compute, "join", join)
    servers = [Server(host=address, deployment=deployment) for address in (NODE_IP, "10.9.9.9")]
    assert node._join(servers) == [f"{NODE_IP}-node1", "10.9.9.9-node1"]
    assert joined == [("RegionOne", [f"{NODE_IP}-node1", "10.9.9.9-node1"])]
    assert not [call for call in guest_calls if call[1][0] == "discover"]

    controller = multihost.nest("controller", Engine)
    assert isinstance(controller, DevstackEngine)
    controller.endpoints = {"servers": [{"host": CONTROLLER_IP, "user": "root"}]}
    monkeypatch.setattr(controller, "_guest", guest)
    controller.map_computes([f"{NODE_IP}-node1"])
    assert guest_calls[-1] == (CONTROLLER_IP, ("discover", devstack.DISCOVER_LOCK))


def test_a_server_without_a_parent_joins_nothing(home: Path) -> None:
    config = _multihost(NODE_CONF)["controller"]
    deployment = Deployment.create("single", config)
    engine = plugin.build(deployment, config, Engine, plugin.ENGINES, "")
    assert isinstance(engine, DevstackEngine)
    assert engine._join([]) == []


@pytest.mark.parametrize(("services", "clones"), [
    ("n-cpu,placement-client,ovn-controller,ovs-vswitchd,ovsdb-server,q-ovn-metadata-agent",
     True),
    ("n-cpu,n-net", True),  # the older tool's devstack-lxc-engine sample
    ("key,mysql,n-cpu", False),  # a cloud of its own: its clones would each be one
    ("n-cpu,rabbit", False),
    ("placement-client,ovn-controller", False),  # no compute
    (None, False),  # DevStack's defaults: the whole cloud
])
def test_a_devstack_server_clones_as_a_node_when_it_runs_computes_alone(
        services: str | None, clones: bool) -> None:
    local_conf = {"VIRT_DRIVER": "fake"} | ({"ENABLED_SERVICES": services} if services else {})
    config = DevstackEngine.parse_config({"type": "DevstackEngine", "local_conf": local_conf,
                                          "provider": _servers(NODE_IP)})
    assert DevstackEngine.clones_as_node(config) is clones

