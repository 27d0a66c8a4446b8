"""Register services in Keystone's catalogue through its REST API, find-or-create style.

Run from benchbed's side with keystoneauth1: a handful of HTTP calls instead of one
`openstack` CLI process (seconds of CPU each on the server) per object. The same
admin session reads Nova's compute services and Placement's resource providers.
"""

from typing import Any


class Catalogue:
    """Idempotent helpers over the Keystone v3 API, authenticated as the admin user."""

    def __init__(self, auth_url: str, admin_password: str) -> None:
        from keystoneauth1 import session as ks_session
        from keystoneauth1.identity import v3

        self.url = auth_url.rstrip("/")
        auth = v3.Password(auth_url=self.url, username="admin", password=admin_password,
                           project_name="admin", user_domain_name="Default",
                           project_domain_name="Default")
        self.session = ks_session.Session(auth=auth, timeout=60)

    def _get(self, path: str, key: str, **params: str) -> list[dict[str, Any]]:
        return self.session.get(f"{self.url}{path}", params=params).json()[key]

    def _create(self, path: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.session.post(f"{self.url}{path}", json={key: body}).json()[key]

    def project(self, name: str, description: str) -> str:
        found = self._get("/projects", "projects", name=name, domain_id="default")
        if found:
            return found[0]["id"]
        return self._create("/projects", "project", {"name": name, "domain_id": "default",
                                                     "description": description})["id"]

    def user(self, name: str, password: str, project_id: str) -> str:
        """Create the user, or reset its password so a re-run converges."""
        found = self._get("/users", "users", name=name, domain_id="default")
        if found:
            self.session.patch(f"{self.url}/users/{found[0]['id']}",
                               json={"user": {"password": password, "enabled": True}})
            return found[0]["id"]
        return self._create("/users", "user", {"name": name, "password": password,
                                               "domain_id": "default",
                                               "default_project_id": project_id})["id"]

    def grant(self, project_id: str, user_id: str, role: str) -> None:
        role_id = self._get("/roles", "roles", name=role)[0]["id"]
        self.session.put(f"{self.url}/projects/{project_id}/users/{user_id}/roles/{role_id}")

    def service_user(self, name: str, password: str) -> None:
        """A user of the `service` project with the admin role: what a service logs in as."""
        project_id = self.project("service", "Service users of the deployed services")
        self.grant(project_id, self.user(name, password, project_id), "admin")

    def service(self, service_type: str, name: str, description: str) -> str:
        found = self._get("/services", "services", type=service_type)
        if found:
            return found[0]["id"]
        return self._create("/services", "service", {"type": service_type, "name": name,
                                                     "description": description})["id"]

    def endpoints(self, service_id: str, region: str, url: str) -> None:
        """One endpoint per interface, created or pointed at `url`."""
        for interface in ("public", "internal", "admin"):
            found = self._get("/endpoints", "endpoints", service_id=service_id,
                              interface=interface, region_id=region)
            if found and found[0]["url"] == url:
                continue
            if found:
                self.session.patch(f"{self.url}/endpoints/{found[0]['id']}",
                                   json={"endpoint": {"url": url}})
            else:
                self._create("/endpoints", "endpoint",
                             {"service_id": service_id, "interface": interface,
                              "region_id": region, "url": url})

    def compute_services(self, region: str) -> list[dict[str, Any]]:
        """Nova's nova-compute services: host, state (`up`/`down`), status, id."""
        return self.session.get("/os-services?binary=nova-compute", endpoint_filter={
            "service_type": "compute", "interface": "public", "region_name": region},
            headers={"OpenStack-API-Version": "compute 2.53"}).json()["services"]

    def delete_compute_service(self, region: str, service_id: str) -> None:
        """Forget a compute service, its compute node and its resource provider."""
        self.session.delete(f"/os-services/{service_id}", endpoint_filter={
            "service_type": "compute", "interface": "public", "region_name": region},
            headers={"OpenStack-API-Version": "compute 2.53"})

    def forget_network_agents(self, region: str, host: str) -> None:
        """Remove a host's Neutron agents. For OVN's, Neutron removes the chassis too, and
        with it the chassis' other agent: one already gone (404) is what was wanted."""
        where = {"service_type": "network", "interface": "public", "region_name": region}
        agents = self.session.get("/v2.0/agents", params={"host": host},
                                  endpoint_filter=where).json()["agents"]
        for agent in agents:
            gone = self.session.delete(f"/v2.0/agents/{agent['id']}", endpoint_filter=where,
                                       raise_exc=False)
            if gone.status_code not in (204, 404):
                gone.raise_for_status()

    def resource_providers(self, region: str) -> list[dict[str, Any]]:
        return self.session.get("/resource_providers", endpoint_filter={
            "service_type": "placement", "interface": "public", "region_name": region},
            headers={"OpenStack-API-Version": "placement 1.14"}).json()["resource_providers"]
