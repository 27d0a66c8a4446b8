"""Prove an OpenStack cloud: a token, the service catalogue, and every endpoint answering."""

import re
from typing import Any

from benchbed.endpoints import OpenStackCloud, User
from benchbed.engines.base import CheckResult
from benchbed.errors import BenchbedError, ConfigError
from benchbed.parallel import run_parallel

# A Keystone that does not answer within this is not waited for (`create` asks it first)
AUTH_TIMEOUT = 20


def _session(cloud: "OpenStackCloud", user: "User", timeout: float = 30) -> Any:
    from keystoneauth1 import session as ks_session
    from keystoneauth1.identity import v3

    auth = v3.Password(auth_url=cloud["auth_url"], username=user["username"],
                       password=user["password"], project_name=user["project_name"],
                       user_domain_name=user["user_domain_name"],
                       project_domain_name=user["project_domain_name"])
    verify: bool | str = not cloud.get("https_insecure", False)
    if verify and cloud.get("https_cacert"):
        verify = cloud["https_cacert"]
    return ks_session.Session(auth=auth, verify=verify, timeout=timeout)


def authenticate(cloud: "OpenStackCloud", user: "User", user_path: str, url_path: str
                 ) -> None:
    """Get a token for `user`, or raise one line: credentials Keystone refuses are the
    config's fault (ConfigError, exit 2); a Keystone that cannot be reached or whose
    certificate does not verify is the world's (exit 1)."""
    from keystoneauth1 import exceptions as ks_exceptions

    where = f"Keystone at {cloud['auth_url']}"
    try:
        _session(cloud, user, timeout=AUTH_TIMEOUT).get_token()
    except ks_exceptions.Unauthorized:
        raise ConfigError(user_path, f"{where} refused the credentials of "
                                       f"'{user['username']}' (project "
                                       f"'{user['project_name']}')") from None
    except ks_exceptions.SSLError as error:
        raise BenchbedError(f"{where}: TLS failed: {_reason(error)}") from None
    except (ks_exceptions.ConnectFailure, ks_exceptions.ConnectTimeout) as error:
        raise BenchbedError(f"{where} cannot be reached: {_reason(error)}") from None
    except ks_exceptions.DiscoveryFailure as error:
        raise ConfigError(url_path, f"{cloud['auth_url']} is no Keystone identity API: "
                                    f"{_reason(error)}") from None
    except ks_exceptions.ClientException as error:
        raise BenchbedError(f"{where}: {_reason(error)}") from None


def _reason(error: Exception) -> str:
    """The innermost cause of a keystoneauth/urllib3 error, on one short line."""
    text = " ".join(str(error).split())
    for pattern in (r"certificate verify failed: [^'\"\\)(]+",
                    r"\[Errno -?\d+\] [^'\"\\)(]+", r"timed out"):
        found = re.search(pattern, text)
        if found:
            return found.group(0).strip()
    return text[:200]


def check_cloud(cloud: "OpenStackCloud") -> list[CheckResult]:
    from keystoneauth1 import exceptions as ks_exceptions

    user = cloud.get("admin") or cloud["users"][0]
    target = f"keystone {cloud['auth_url']}"
    session = _session(cloud, user)
    try:
        token = session.get_token()
        access = session.auth.get_access(session)
    except ks_exceptions.ClientException as error:
        return [CheckResult(target, False, f"no token for {user['username']}: {error}")]
    results = [CheckResult(target, bool(token), f"token issued for {user['username']}")]
    catalog = access.service_catalog.catalog or []
    results.append(CheckResult("service catalogue", bool(catalog),
                               ", ".join(sorted(s.get("type", "?") for s in catalog))
                               or "empty"))
    interface = cloud.get("endpoint_type", "public")
    region = cloud.get("region_name")
    endpoints = [
        (service.get("type", "?"), endpoint["url"])
        for service in catalog for endpoint in service.get("endpoints", [])
        if endpoint.get("interface") == interface
        and (region is None or endpoint.get("region_id", endpoint.get("region")) == region)
    ]

    def probe(item: tuple[str, str]) -> CheckResult:
        service_type, url = item
        try:
            response = session.get(url, authenticated=True, raise_exc=False,
                                   endpoint_filter=None)
        except ks_exceptions.ClientException as error:
            return CheckResult(f"{service_type} {url}", False, str(error))
        return CheckResult(f"{service_type} {url}", response.status_code < 500,
                           f"HTTP {response.status_code}")

    results.extend(run_parallel("probing endpoints", endpoints, probe,
                                describe=lambda item: item[1]))
    return results


def check_computes(cloud: "OpenStackCloud", hosts: list[str]) -> list[CheckResult]:
    """Every expected nova-compute is `up`, and Placement has a resource provider for it."""
    from keystoneauth1 import exceptions as ks_exceptions

    session = _session(cloud, cloud.get("admin") or cloud["users"][0])
    where = {"interface": cloud.get("endpoint_type", "public"),
             "region_name": cloud.get("region_name")}
    try:
        services = session.get("/os-services?binary=nova-compute", endpoint_filter={
            "service_type": "compute", **where}).json()["services"]
        providers = session.get("/resource_providers", endpoint_filter={
            "service_type": "placement", **where},
            headers={"OpenStack-API-Version": "placement 1.14"}).json()["resource_providers"]
    except ks_exceptions.ClientException as error:
        return [CheckResult("compute services", False, str(error))]
    up = {s["host"] for s in services if s["state"] == "up" and s["status"] == "enabled"}
    named = {p["name"] for p in providers}
    down = [host for host in hosts if host not in up]
    unplaced = [host for host in hosts if host not in named]
    return [
        CheckResult("compute services", not down, f"{len(hosts) - len(down)}/{len(hosts)} up"
                    + (f"; not up: {', '.join(down[:5])}" if down else "")),
        CheckResult("placement resource providers", not unplaced,
                    f"{len(hosts) - len(unplaced)}/{len(hosts)} compute hosts"
                    + (f"; missing: {', '.join(unplaced[:5])}" if unplaced else "")),
    ]
