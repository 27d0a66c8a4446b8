"""ExistingCloud: register an OpenStack cloud that is already running (the older tool's format)."""

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from benchbed.endpoints import Endpoints, stored
from benchbed.engines.base import CheckResult, Engine
from benchbed.errors import InputError
from benchbed.plugin import join_path
from benchbed.settings import PluginConfig, Section, setting
from benchbed.tls import check_ca_file

ENDPOINT_TYPES = Literal["public", "internal", "admin", "publicURL", "internalURL", "adminURL",
                         None]


@dataclass(frozen=True, kw_only=True)
class CloudUser(Section):
    """Keystone credentials, in the v2 (`tenant_name`) or the v3 form."""

    username: str = setting("The user's name.", minLength=1)
    password: str = setting("The user's password.", secret=True)
    tenant_name: str | None = setting("The project, as Keystone v2 named it (default: the "
                                      "user's name).", None)
    project_name: str | None = setting("The project (default: tenant_name).", None)
    domain_name: str | None = setting("The domain of both the user and the project.", None)
    admin_domain_name: str | None = setting("The older tool's v3 samples' name for "
                                            "domain_name.", None)
    user_domain_name: str | None = setting("The user's domain (default: domain_name, else "
                                           "Default).", None)
    project_domain_name: str | None = setting("The project's domain (default: domain_name, "
                                              "else Default).", None)


@dataclass(frozen=True, kw_only=True)
class CloudKeys(Section):
    """The keys that describe one OpenStack cloud (the older tool's existing-cloud form)."""

    auth_url: str | None = setting("Keystone's URL.", None, pattern="^https?://[^\\s]+$")
    region_name: str | None = setting("The region (default: RegionOne).", None)
    endpoint_type: ENDPOINT_TYPES = setting("Which endpoints of the catalogue to use "
                                            "(default: public).", None)
    endpoint: str | None = setting("Kept for the older tool's configs; not used.", None,
                                   schema={"type": ["string", "null"]})
    https_insecure: bool = setting("Do not verify the cloud's TLS certificates.", False)
    https_cacert: str | None = setting("A CA bundle to verify the cloud's TLS certificates "
                                       "with.", None)
    profiler_hmac_key: str | None = setting("Kept for the older tool's configs; not used.",
                                            None, secret=True,
                                            schema={"type": ["string", "null"]})
    admin: CloudUser | None = setting("The admin's credentials.", None)
    users: list[CloudUser] = setting("Credentials of existing non-admin users.", [])


@dataclass(frozen=True, kw_only=True)
class CredsCloud(CloudKeys):
    auth_url: str = setting("Keystone's URL.", pattern="^https?://[^\\s]+$")


@dataclass(frozen=True, kw_only=True)
class Creds(Section):
    openstack: CredsCloud = setting("The cloud.")


# the cloud's keys at the top, with an admin or users; or nested under creds.openstack
CONFIG_FORMS: list[dict[str, Any]] = [
    {"required": ["auth_url"], "anyOf": [{"required": ["admin"]}, {"required": ["users"]}]},
    {"required": ["creds"]},
]


@dataclass(frozen=True, kw_only=True)
class ExistingCloudConfig(CloudKeys, PluginConfig):
    creds: Creds | None = setting("The same keys nested as `creds: {openstack: {...}}` (the "
                                  "older tool's other form), instead of at the top.", None)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {**super().json_schema(), "oneOf": CONFIG_FORMS}


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


# Keystone's v2.0 API, which the older tool's configs name, is gone since Queens (2018)
V2_PATH = re.compile(r"/v2\.0/?$")


def v3_auth_url(auth_url: str) -> str:
    """A `/v2.0` identity URL as the same Keystone's v3 one. v2.0 knew no domains: its users
    and tenants are v3's users and projects of the Default domain, so the mapping is exact."""
    return V2_PATH.sub("/v3", auth_url)


def ca_path(path: str) -> str:
    """The CA bundle as an absolute path: the exports hand it to clients run elsewhere."""
    return str(Path(path).expanduser().resolve())


def normalize_cloud(cloud: dict[str, Any]) -> Endpoints:
    """The endpoints every OpenStack engine returns: the shape of Rally's existing@openstack."""
    endpoint_type = (cloud.get("endpoint_type") or "public").replace("URL", "")
    cacert = cloud.get("https_cacert")
    endpoints: dict[str, Any] = {
        "auth_url": v3_auth_url(cloud["auth_url"]),
        "region_name": cloud.get("region_name") or "RegionOne",
        "endpoint_type": endpoint_type,
        "https_insecure": bool(cloud.get("https_insecure", False)),
        "https_cacert": ca_path(cacert) if cacert else "",
    }
    if cloud.get("admin"):
        endpoints["admin"] = normalize_user(cloud["admin"])
    if cloud.get("users"):
        endpoints["users"] = [normalize_user(user) for user in cloud["users"]]
    return stored({"openstack": endpoints})


class ExistingCloud(Engine[ExistingCloudConfig]):
    """An OpenStack cloud that already runs; Keystone v2-style or v3 credentials."""

    EXAMPLE = {
        "type": "ExistingCloud", "auth_url": "http://192.0.2.10:5000/v3/",
        "admin": {"username": "admin", "password": "secret", "project_name": "admin"}}

    Config = ExistingCloudConfig

    @staticmethod
    def _keys(config: ExistingCloudConfig) -> tuple[CloudKeys, str]:
        """The cloud's keys and their config path (at the top, or under creds.openstack)."""
        return (config.creds.openstack, "creds.openstack") if config.creds else (config, "")

    @classmethod
    def validate_config(cls, config: ExistingCloudConfig, path: str, *,
                        has_parent: bool = False) -> None:
        cloud, where = cls._keys(config)
        if cloud.https_cacert:
            check_ca_file(cloud.https_cacert,
                          join_path(join_path(path, where), "https_cacert"))

    @classmethod
    def preflight(cls, config: ExistingCloudConfig) -> None:
        """A token for the admin and every user: a cloud that cannot be reached, or that
        refuses the credentials, is not recorded."""
        from benchbed.engines.keystone_check import authenticate

        cloud, where = cls._keys(config)
        endpoints = normalize_cloud(cloud.to_dict())["openstack"]
        named = [("admin", endpoints["admin"])] if endpoints.get("admin") else []
        named += [(join_path("", "users", index), user)
                  for index, user in enumerate(endpoints.get("users", []))]
        for key, user in named:
            authenticate(endpoints, user, join_path(where, key), join_path(where, "auth_url"))

    def _cloud(self) -> CloudKeys:
        return self._keys(self.config)[0]

    def deploy(self) -> Endpoints:
        cloud = self._cloud()
        with self.deployment.step("register existing cloud", cloud.auth_url or ""):
            return normalize_cloud(cloud.to_dict())

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
        config["https_cacert"] = ca_path(env["OS_CACERT"])
    return config
