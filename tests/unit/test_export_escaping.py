"""The one escaping function per export format, over drawn values: what the reader takes back
is exactly the value, and nothing in it is left for the reader to evaluate.

tests/integration/test_export_readers.py runs the real readers; these check the writers
over many more values than a reader can be started for.
"""

import json
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from benchbed.engines.existing_cloud import normalize_cloud
from benchbed.errors import InputError
from benchbed.exporters import openstack
from benchbed.exporters.openstack import not_formatted
from benchbed.exporters.servers import AnsibleUnsafe, ansible_yaml, ssh_path

TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)
# what YAML 1.1 resolves to something else than a string, and Jinja's three delimiters
TRICKY = st.sampled_from(["22", "0123", "yes", "No", "~", "null", "", "1:30", "0x1F", "1e3",
                          ".inf", "=", "<<", "2001-01-01", "{{ x }}", "{% x %}", "{# x #}",
                          "!unsafe x", "*a", "&a b", "'", '"', "a\nb", " x ", "\x85", "\u2028"])


class Unsafe(str):
    """What Ansible keeps from templating."""


class AnsibleLikeLoader(yaml.SafeLoader):
    """Reads `!unsafe` as Ansible 2.19 does (ansible/_internal/_yaml/_constructor.py):
    the scalar is resolved again as if it were plain, then marked unsafe."""


def _construct_unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    assert isinstance(node, yaml.ScalarNode)
    tag = loader.resolve(yaml.ScalarNode, node.value, (True, False))
    value = loader.construct_object(yaml.ScalarNode(tag, node.value), deep=True)
    return Unsafe(value) if isinstance(value, str) else ("not a string", value)


AnsibleLikeLoader.add_constructor("!unsafe", _construct_unsafe)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(TEXT, TRICKY), min_size=1, max_size=6))
def test_ansible_yaml_gives_every_value_back_and_templates_none(values: list[str]) -> None:
    data = {"all": {"hosts": {"h": {f"v{i}": AnsibleUnsafe(v) for i, v in enumerate(values)}}}}
    read = yaml.load(ansible_yaml(data), Loader=AnsibleLikeLoader)["all"]["hosts"]["h"]
    assert [read[f"v{i}"] for i in range(len(values))] == values
    for index, value in enumerate(values):
        if "{" in value:  # anything Jinja could start with is marked, never plain
            assert isinstance(read[f"v{index}"], Unsafe)


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters='"\\'),
               min_size=1, max_size=40).filter(lambda text: "${" not in text))
def test_ssh_path_doubles_every_percent_and_quotes(path: str) -> None:
    quoted = ssh_path(path, "IdentityFile", "h")
    assert quoted.startswith('"') and quoted.endswith('"')
    inner = quoted[1:-1]
    assert "%" not in inner.replace("%%", "")
    assert inner.replace("%%", "%") == path


@pytest.mark.parametrize("path", ["/k/id\nProxyCommand touch /tmp/x", '/k/"id', "/k/\\id",
                                  "/k/${HOME}/id", "/k/\x7f", "", "/k/\rMatch exec x"])
def test_ssh_path_refuses_what_no_quoting_covers(path: str) -> None:
    with pytest.raises(InputError, match="cannot hold safely"):
        ssh_path(path, "IdentityFile", "h")


@pytest.mark.parametrize("value", ["R{auth}", "{0}", "x}", "/c/{auth[password]}"])
def test_values_openstacksdk_formats_may_hold_no_brace(value: str) -> None:
    with pytest.raises(InputError, match=r"str\.format"):
        not_formatted("openrc", "OS_REGION_NAME", value)


@pytest.mark.parametrize("value", ["RegionOne", "%(x)s", "$HOME", "it's"])
def test_values_without_braces_pass(value: str) -> None:
    not_formatted("clouds.yaml", "region_name", value)


@settings(max_examples=300, deadline=None)
@given(password=st.one_of(TEXT, TRICKY), project=st.one_of(TEXT, TRICKY).filter(bool))
def test_clouds_yaml_and_rally_spec_round_trip(password: str, project: str) -> None:
    # the exporters read a deployment's name and endpoints only
    deployment: Any = SimpleNamespace(name="rt", uuid="u", endpoints=normalize_cloud({
        "auth_url": "http://127.0.0.1:9/v3",
        "admin": {"username": "admin", "password": password, "project_name": project}}))
    # safe_load refuses any tag but YAML's own, and resolves no alias it was not given
    auth = yaml.safe_load(openstack.clouds_yaml(deployment))["clouds"]["rt"]["auth"]
    assert (auth["password"], auth["project_name"]) == (password, project)
    spec = json.loads(openstack.rally_spec(deployment))["existing@openstack"]["admin"]
    assert (spec["password"], spec["project_name"]) == (password, project)
