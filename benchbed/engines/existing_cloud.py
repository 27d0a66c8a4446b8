"""ExistingCloud: register an OpenStack cloud that is already running (the older tool's format)."""

import os
from typing import Any

from benchbed.endpoints import Endpoints
from benchbed.engines.base import CheckResult, Engine
from benchbed.errors import InputError

USER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "username": {"type": "string", "minLength": 1},
        "password": {"type": "string"},
        "tenant_name": {"type": "string"},
        "project_name": {"type": "string"},
        "domain_name": {"type": "string"},
        "admin_domain_name": {"type": "string"},
        "user_domain_name": {"type": "string"},
        "project_domain_name": {"type": "string"},
    },
    "required": ["username", "password"],
    "additionalProperties": False,
}

CLOUD_PROPERTIES: dict[str, Any] = {
    "auth_url": {"type": "string", "pattern": "^https?://[^\\s]+$"},
    "region_name": {"type": "string"},
    "endpoint_type": {"enum": ["public", "internal", "admin", "publicURL", "internalURL",
                               "adminURL", None]},
    "endpoint": {"type": ["string", "null"]},
    "https_insecure": {"type": "boolean"},
    "https_cacert": {"type": "string"},
    "profiler_hmac_key": {"type": ["string", "null"]},
    "admin": USER_SCHEMA,
    "users": {"type": "array", "items": USER_SCHEMA},
}


def normalize_user(user: dict[str, Any]) -> dict[str, Any]:
    """Keystone v3 credentials from either the v2 (`tenant_name`) or the v3 form."""
    # the older tool's v3 samples named the admin's domain `admin_domain_name`
    domain = user.get("domain_name") or user.get("admin_domain_name")
    return {
        "username": user["username"],
        "password": user["password"],
        "project_name": user.get("project_name") or user.get("tenant_name") or user["username"],
        "user_domain_name": user.get("user_domain_name") or domain or "Default",
        "project_domain_name": user.get("project_domain_name") or domain or "Default",
    }


def normalize_cloud(cloud: dict[str, Any]) -> dict[str, Any]:
    """The endpoints every OpenStack engine returns: the shape of Rally's existing@openstack."""
    endpoint_type = (cloud.get("endpoint_type") or "public").replace("URL", "")
    endpoints: dict[str, Any] = {
        "auth_url": cloud["auth_url"],
        "region_name": cloud.get("region_name") or "RegionOne",
        "endpoint_type": endpoint_type,
        "https_insecure": bool(cloud.get("https_insecure", False)),
        "https_cacert": cloud.get("https_cacert", ""),
    }
    if cloud.get("admin"):
        endpoints["admin"] = normalize_user(cloud["admin"])
    if cloud.get("users"):
        endpoints["users"] = [normalize_user(user) for user in cloud["users"]]
    return {"openstack": endpoints}


class ExistingCloud(Engine):
    """An OpenStack cloud that already runs; Keystone v2-style or v3 credentials."""

    CONFIG_SCHEMA = {
        "type": "object",
        "properties": {
            "type": {"const": "ExistingCloud"},
            **CLOUD_PROPERTIES,
            "creds": {
                "type": "object",
                "properties": {"openstack": {"type": "object", "properties": CLOUD_PROPERTIES,
                                             "required": ["auth_url"],
                                             "additionalProperties": False}},
                "required": ["openstack"],
                "additionalProperties": False,
            },
        },
        "required": ["type"],
        "oneOf": [
            {"required": ["auth_url"], "anyOf": [{"required": ["admin"]},
                                                 {"required": ["users"]}]},
            {"required": ["creds"]},
        ],
        "additionalProperties": False,
    }

    def _cloud(self) -> dict[str, Any]:
        return self.config["creds"]["openstack"] if "creds" in self.config else self.config

    def deploy(self) -> Endpoints:
        with self.deployment.step("register existing cloud", self._cloud()["auth_url"]):
            return normalize_cloud(self._cloud())

    def teardown(self) -> None:
        """The cloud outlives the deployment: nothing to remove."""

    def check(self) -> list[CheckResult]:
        from benchbed.engines.keystone_check import check_cloud

        return check_cloud(self.endpoints["openstack"])


def config_from_env(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Build an ExistingCloud config from the OS_* variables of an openrc file."""
    env = os.environ if environ is None else environ
    missing = [name for name in ("OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD") if not env.get(name)]
    if missing:
        raise InputError(f"--fromenv: {', '.join(missing)} not set in the environment")
    admin = {"username": env["OS_USERNAME"], "password": env["OS_PASSWORD"]}
    for key, variable in (("project_name", "OS_PROJECT_NAME"), ("tenant_name", "OS_TENANT_NAME"),
                          ("user_domain_name", "OS_USER_DOMAIN_NAME"),
                          ("project_domain_name", "OS_PROJECT_DOMAIN_NAME")):
        if env.get(variable):
            admin[key] = env[variable]
    config: dict[str, Any] = {"type": "ExistingCloud", "auth_url": env["OS_AUTH_URL"],
                              "admin": admin}
    if env.get("OS_REGION_NAME"):
        config["region_name"] = env["OS_REGION_NAME"]
    interface = env.get("OS_INTERFACE") or env.get("OS_ENDPOINT_TYPE")
    if interface:
        config["endpoint_type"] = interface
    if env.get("OS_INSECURE", "").lower() in ("1", "true", "yes"):
        config["https_insecure"] = True
    if env.get("OS_CACERT"):
        config["https_cacert"] = env["OS_CACERT"]
    return config
