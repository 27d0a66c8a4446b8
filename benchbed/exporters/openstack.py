"""openrc, clouds.yaml and Rally env spec for deployments that expose an OpenStack cloud."""

import json
from typing import TYPE_CHECKING, Any

from benchbed import endpoints
from benchbed.endpoints import OpenStackCloud, cloud_user
from benchbed.errors import InputError

if TYPE_CHECKING:
    from benchbed.deployment import Deployment


def _cloud(deployment: "Deployment") -> OpenStackCloud:
    cloud = endpoints.stored(deployment.endpoints).get("openstack")
    if not cloud:
        raise InputError(f"deployment '{deployment.name}' has no OpenStack endpoints to export")
    return cloud


def openrc(deployment: "Deployment") -> str:
    cloud = _cloud(deployment)
    user = cloud_user(cloud)
    variables = {
        "OS_AUTH_URL": cloud["auth_url"],
        "OS_IDENTITY_API_VERSION": "3",
        "OS_USERNAME": user["username"],
        "OS_PASSWORD": user["password"],
        "OS_PROJECT_NAME": user["project_name"],
        "OS_USER_DOMAIN_NAME": user["user_domain_name"],
        "OS_PROJECT_DOMAIN_NAME": user["project_domain_name"],
        "OS_REGION_NAME": cloud["region_name"],
        "OS_INTERFACE": cloud["endpoint_type"],
        "OS_ENDPOINT_TYPE": cloud["endpoint_type"],
    }
    if cloud.get("https_insecure"):
        variables["OS_INSECURE"] = "true"
    if cloud.get("https_cacert"):
        variables["OS_CACERT"] = cloud["https_cacert"]
    # json.dumps escapes every control character: the comment cannot end early
    lines = [f"# benchbed deployment {json.dumps(deployment.name)} ({deployment.uuid})"]
    for name, value in variables.items():
        if name != "OS_PASSWORD":
            not_formatted("openrc", name, value)
    lines += [f"export {name}={single_quoted(value, name)}" for name, value in variables.items()]
    return "\n".join(lines) + "\n"


def not_formatted(fmt: str, name: str, value: Any) -> None:
    """Refuse a '{' or '}' in a value the openstack client formats.

    openstacksdk runs `value.format(**config)` over every top-level value it reads: from the
    environment any OS_* value but the password may be one, from clouds.yaml any outside
    `auth`. A region `{auth}` would become the credentials, password and all; `{0}` would
    crash it. No escape suits every reader
    (Rally takes the environment as it is), so such a value is refused."""
    text = str(value)
    if "{" in text or "}" in text:
        raise InputError(f"{fmt}: {name} is {text[:80]!r}; the openstack client would expand "
                         f"its '{{' '}}' (str.format) and read another value in its place")


def single_quoted(value: Any, name: str) -> str:
    """`value` in POSIX shell single quotes, where nothing but ' itself is special."""
    text = str(value)
    if "\0" in text:
        raise InputError(f"openrc: {name} holds a NUL character, which no shell variable can")
    return "'" + text.replace("'", "'\\''") + "'"


def clouds_yaml(deployment: "Deployment") -> str:
    import yaml

    cloud = _cloud(deployment)
    user = cloud_user(cloud)
    entry: dict[str, Any] = {
        "auth": {
            "auth_url": cloud["auth_url"],
            "username": user["username"],
            "password": user["password"],
            "project_name": user["project_name"],
            "user_domain_name": user["user_domain_name"],
            "project_domain_name": user["project_domain_name"],
        },
        "region_name": cloud["region_name"],
        "interface": cloud["endpoint_type"],
        "identity_api_version": 3,
    }
    if cloud.get("https_insecure"):
        entry["verify"] = False
    elif cloud.get("https_cacert"):
        entry["cacert"] = cloud["https_cacert"]
    for name, value in entry.items():
        if name != "auth":
            not_formatted("clouds.yaml", name, value)
    return yaml.safe_dump({"clouds": {deployment.name: entry}}, sort_keys=False)


def rally_spec(deployment: "Deployment") -> str:
    """The spec `rally env create --spec` reads (platform existing@openstack)."""
    spec: dict[str, Any] = dict(_cloud(deployment))
    if not spec.get("https_cacert"):
        spec.pop("https_cacert", None)
    return json.dumps({"existing@openstack": spec}, indent=2) + "\n"
