"""The few calls OpenStackProvider makes to a cloud (Nova, Glance, Neutron), on keystoneauth1.

Every request has a timeout and every refusal becomes one line naming the call and the
cloud's own message. "Already gone" (404) is success for every delete, so destroy is
re-runnable after any crash.
"""

import base64
from typing import TYPE_CHECKING, Any

from benchbed.errors import BenchbedError
from benchbed.ports import in_order

if TYPE_CHECKING:
    from benchbed.ports import PeerPort
    from benchbed.providers.openstack import OpenStackProviderConfig

REQUEST_TIMEOUT = 60.0


class CloudError(BenchbedError):
    """The cloud refused a call or could not be reached; the message says which and why."""


def _session(config: "OpenStackProviderConfig") -> Any:
    from keystoneauth1 import session as ks_session
    from keystoneauth1.identity import generic

    auth = generic.Password(
        auth_url=config.auth_url, username=config.user, password=config.password,
        project_name=config.tenant, user_domain_name=config.user_domain_name,
        project_domain_name=config.project_domain_name)
    verify: bool | str = not config.https_insecure
    if verify and config.https_cacert:
        verify = config.https_cacert
    return ks_session.Session(auth=auth, verify=verify, timeout=REQUEST_TIMEOUT)


def _message(response: Any) -> str:
    """The cloud's own explanation: Nova, Glance and Neutron each nest it differently."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason
    if isinstance(body, dict):
        for value in body.values():
            if isinstance(value, dict) and "message" in value:
                return str(value["message"])
        if "message" in body:
            return str(body["message"])
    return str(body)[:300]


class OpenStackCloud:
    """One project of one cloud, as OpenStackProvider's config names it."""

    def __init__(self, config: "OpenStackProviderConfig", where: str) -> None:
        self.where = where
        self.region = config.region
        self.session = _session(config)

    def _call(self, service: str, method: str, url: str, *, what: str,
              ok: tuple[int, ...] = (200, 201, 202, 204), **kwargs: Any) -> Any:
        from keystoneauth1 import exceptions as ks_exceptions

        try:
            response = self.session.request(
                url, method, raise_exc=False,
                endpoint_filter={"service_type": service, "interface": "public",
                                 "region_name": self.region}, **kwargs)
        except ks_exceptions.ClientException as error:
            raise CloudError(f"{self.where}: {what}: {error}") from None
        if response.status_code not in ok:
            raise CloudError(f"{self.where}: {what}: {response.status_code} "
                             f"{_message(response)}")
        return response

    def has_service(self, service: str) -> bool:
        """Whether the catalogue offers `service` here (Neutron is optional for servers)."""
        from keystoneauth1 import exceptions as ks_exceptions

        try:
            return bool(self.session.get_endpoint(service_type=service, interface="public",
                                                  region_name=self.region))
        except ks_exceptions.EndpointNotFound:
            return False
        except ks_exceptions.ClientException as error:
            raise CloudError(f"{self.where}: authenticate: {error}") from None

    # -- flavors and images --------------------------------------------------------------------

    def flavor_id(self, ref: str) -> str:
        """A flavor's id from its id or its name."""
        found = self._call("compute", "GET", f"/flavors/{ref}", what=f"flavor {ref}",
                           ok=(200, 404))
        if found.status_code == 200:
            return found.json()["flavor"]["id"]
        flavors = self._call("compute", "GET", "/flavors", what="list flavors").json()
        named = [f["id"] for f in flavors["flavors"] if f["name"] == ref]
        if not named:
            known = ", ".join(sorted(f["name"] for f in flavors["flavors"])) or "none"
            raise CloudError(f"{self.where}: flavor {ref!r} does not exist (known: {known})")
        return named[0]

    def image(self, image_id: str) -> dict[str, Any] | None:
        found = self._call("image", "GET", f"/v2/images/{image_id}",
                           what=f"image {image_id}", ok=(200, 404))
        return found.json() if found.status_code == 200 else None

    def images(self, **filters: str) -> list[dict[str, Any]]:
        """Every image the project sees (Glance pages with `next` links)."""
        listed: list[dict[str, Any]] = []
        url = "/v2/images"
        params: dict[str, Any] | None = {"limit": 200, **filters}
        while url:
            page = self._call("image", "GET", url, what="list images", params=params).json()
            listed.extend(page["images"])
            url, params = page.get("next", ""), None
        return listed

    def create_image(self, name: str, disk_format: str, tags: list[str]) -> str:
        body = {"name": name, "disk_format": disk_format, "container_format": "bare",
                "visibility": "private", "tags": tags}
        return self._call("image", "POST", "/v2/images", what=f"create image {name}",
                          json=body).json()["id"]

    def import_image(self, image_id: str, url: str) -> None:
        """Glance fetches `url` itself (its web-download import method)."""
        self._call("image", "POST", f"/v2/images/{image_id}/import", what="import image",
                   json={"method": {"name": "web-download", "uri": url}})

    def import_failure(self, image_id: str) -> str | None:
        """Why Glance's last import of the image failed, if it did. Glance puts an image whose
        import failed back to `queued` and says why only in the import's task (`GET
        /v2/images/ID/tasks`, Wallaby and newer; without it a failure shows as a timeout)."""
        found = self._call("image", "GET", f"/v2/images/{image_id}/tasks",
                           what=f"tasks of image {image_id}", ok=(200, 404))
        if found.status_code != 200:
            return None
        tasks = sorted(found.json().get("tasks", []), key=lambda t: str(t.get("created_at")))
        if tasks and tasks[-1].get("status") == "failure":
            return str(tasks[-1].get("message") or "Glance gave no reason")
        return None

    def delete_image(self, image_id: str) -> None:
        self._call("image", "DELETE", f"/v2/images/{image_id}", what=f"delete image {image_id}",
                   ok=(204, 404))

    # -- key pairs and security groups ---------------------------------------------------------

    def import_key_pair(self, name: str, public_key: str) -> None:
        self._call("compute", "POST", "/os-keypairs", what=f"import key pair {name}",
                   json={"keypair": {"name": name, "public_key": public_key}})

    def delete_key_pair(self, name: str) -> None:
        self._call("compute", "DELETE", f"/os-keypairs/{name}", what=f"delete key pair {name}",
                   ok=(202, 204, 404))

    def create_group(self, name: str, description: str) -> str:
        """A security group with Neutron's default rules only (egress)."""
        group = self._call("network", "POST", "/v2.0/security-groups",
                           what=f"create security group {name}",
                           json={"security_group": {"name": name, "description": description}})
        return str(group.json()["security_group"]["id"])

    def allow_peers(self, group_id: str, ports: "list[PeerPort]") -> None:
        """Let the group's own members in on `ports` (IPv4 and IPv6): rules whose
        remote_group_id is the group itself, never an address range; one bulk request."""
        rules = [{"security_group_id": group_id, "direction": "ingress",
                  "protocol": port.protocol, "port_range_min": port.port,
                  "port_range_max": port.port, "remote_group_id": group_id,
                  "ethertype": ethertype} for port in in_order(ports)
                 for ethertype in ("IPv4", "IPv6")]
        self._call("network", "POST", "/v2.0/security-group-rules",
                   what="allow the deployment's servers in",
                   json={"security_group_rules": rules})

    def create_security_group(self, name: str, description: str, ssh_cidr: str) -> str:
        group_id = self.create_group(name, description)
        rule = {"security_group_id": group_id, "direction": "ingress", "protocol": "tcp",
                "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": ssh_cidr,
                "ethertype": "IPv6" if ":" in ssh_cidr else "IPv4"}
        self._call("network", "POST", "/v2.0/security-group-rules", what="allow SSH",
                   json={"security_group_rule": rule})
        return group_id

    def tag_security_group(self, group_id: str, tags: list[str]) -> None:
        """Neutron's tags (its standard-attr-tag extension, on by default), so that gc can
        tell whose the group is; a cloud without the extension keeps the group untagged."""
        self._call("network", "PUT", f"/v2.0/security-groups/{group_id}/tags",
                   what=f"tag security group {group_id}", ok=(200, 201, 404),
                   json={"tags": tags})

    def security_groups(self) -> list[dict[str, Any]]:
        return list(self._call("network", "GET", "/v2.0/security-groups",
                               what="list security groups").json()["security_groups"])

    def groups_named(self, name: str, description: str) -> list[str]:
        """Groups of this name whose description is ours, so never somebody else's."""
        groups = self._call("network", "GET", "/v2.0/security-groups", what="list groups",
                            params={"name": name}).json()["security_groups"]
        return [group["id"] for group in groups
                if group["name"] == name and group.get("description") == description]

    def delete_security_group(self, group_id: str) -> None:
        self._call("network", "DELETE", f"/v2.0/security-groups/{group_id}",
                   what=f"delete security group {group_id}", ok=(204, 404))

    # -- servers -------------------------------------------------------------------------------

    def create_server(self, request: dict[str, Any]) -> str:
        body = dict(request)
        if body.get("user_data"):
            body["user_data"] = base64.b64encode(body["user_data"].encode()).decode()
        return self._call("compute", "POST", "/servers", what=f"create server {body['name']}",
                          json={"server": body}).json()["server"]["id"]

    def server(self, server_id: str) -> dict[str, Any] | None:
        found = self._call("compute", "GET", f"/servers/{server_id}",
                           what=f"server {server_id}", ok=(200, 404))
        return found.json()["server"] if found.status_code == 200 else None

    def servers_named(self, name: str, deployment_uuid: str) -> list[str]:
        """Servers of exactly this name that carry this deployment's metadata, nobody else's.

        Nova's name filter is a regular expression, hence the anchors and the second check."""
        listed = self._call("compute", "GET", "/servers/detail", what="list servers",
                            params={"name": f"^{name}$"}).json()["servers"]
        return [s["id"] for s in listed if s["name"] == name
                and s.get("metadata", {}).get("benchbed_deployment") == deployment_uuid]

    def tagged_servers(self) -> list[dict[str, Any]]:
        """The project's servers that carry a benchbed deployment's metadata."""
        listed = self._call("compute", "GET", "/servers/detail", what="list servers"
                            ).json()["servers"]
        return [s for s in listed if s.get("metadata", {}).get("benchbed_deployment")]

    def delete_server(self, server_id: str) -> None:
        self._call("compute", "DELETE", f"/servers/{server_id}",
                   what=f"delete server {server_id}", ok=(204, 404))


def server_address(server: dict[str, Any]) -> str | None:
    """accessIPv4/6 if set, else the first address of any network (the older tool's order)."""
    if server.get("accessIPv4") or server.get("accessIPv6"):
        return server.get("accessIPv4") or server.get("accessIPv6")
    addresses = server.get("addresses") or {}
    for network in ["public", *sorted(addresses)]:
        for address in addresses.get(network, []):
            return address["addr"]
    return None
