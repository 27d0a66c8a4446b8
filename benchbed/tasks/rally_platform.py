"""benchbed as a Rally environment platform: `benchbed@openstack`.

With benchbed installed beside Rally (its `rally_plugins` entry point names this module),
`rally env create --spec` deploys through `benchbed.api` with benchbed's guarantees (ledger,
lease, destroy that can be re-run), and Rally's own OpenStack scenarios run against it
unchanged. The spec takes a benchbed config inline or from a file:

    {"benchbed@openstack": {"config": {"type": "DebianEngine", ...}, "name": "lab"}}
    {"benchbed@openstack": {"file": "lab.yaml"}}

Rally files a platform's data under the part of its name after '@' (env_mgr: `platform_name`)
and rally-openstack's contexts read the credentials from `platforms["openstack"]`; so
`create()` returns them in exactly the shape `existing@openstack` makes (it is that plugin's
own conversion of benchbed's `rally-spec` export), and the benchbed deployment it stands for
goes into the plugin data. `cleanup()` deletes the Keystone users, projects and roles whose
names are Rally's own generated names (of one task, if Rally names it): what a task that was
killed, or whose own cleanup failed, leaves in the cloud.

This module is imported by Rally only: it needs `rally` and `rally-openstack`.
"""

import json
import os
import traceback
from collections.abc import Callable
from typing import Any

from rally.common import logging as rally_logging
from rally.common import utils as rally_utils
from rally.common.plugin import discover
from rally.common.plugin import plugin as rally_plugin
from rally.env import platform
from rally_openstack.environment.platforms import existing

from benchbed import api, masking
from benchbed.deployment import Deployment, Status, validate_name
from benchbed.errors import InputError, NotFoundError

LOG = rally_logging.getLogger(__name__)

# The Keystone kinds cleanup sweeps, in the order they are deleted (a user's project and
# its role assignments outlive it): (Rally's resource type, API collection).
SWEPT = (("keystone.user", "users"), ("keystone.project", "projects"),
         ("keystone.role", "roles"))


def _use_home(plugin_data: dict[str, Any] | None) -> None:
    """Act in the benchbed home the deployment was made in, whatever BENCHBED_HOME says in
    the shell that runs `rally env destroy` later: its database holds the ledger. (Each
    `rally` command is a process of its own that acts on one env.)"""
    home = (plugin_data or {}).get("home")
    if home:
        os.environ["BENCHBED_HOME"] = home


def _load(spec: dict[str, Any]) -> dict[str, Any]:
    """The benchbed config a spec names, with ${ENV} expanded and validated."""
    from benchbed import config as config_lib

    if "file" in spec:
        return api.load_config(spec["file"])
    config = config_lib.expand_env(spec["config"])
    api.validate(config)
    return config


@platform.configure(name="benchbed", platform="openstack")
class BenchbedOpenStack(platform.Platform):
    """An OpenStack cloud that benchbed deploys, and destroys when the env is destroyed.

    `config` is a benchbed deployment config (the same as `benchbed deployment create
    --file` reads), or `file` names one; `name` names the benchbed deployment (default
    `rally-` and the start of the platform's uuid). `rally env cleanup` deletes Keystone
    users, projects and roles that carry Rally's generated names.
    """

    CONFIG_SCHEMA = {
        "type": "object",
        "properties": {
            "config": {"type": "object", "description": "a benchbed deployment config"},
            "file": {"type": "string", "description": "path of a benchbed config file"},
            "name": {"type": "string", "description": "the benchbed deployment's name"},
        },
        "oneOf": [{"required": ["config"]}, {"required": ["file"]}],
        "additionalProperties": False,
    }

    def _name(self) -> str:
        return str(self.spec.get("name") or f"rally-{str(self.uuid)[:8]}")

    def create(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Deploy through benchbed.api; return the credentials as `existing@openstack`
        does, and the deployment's uuid and home as plugin data.

        Rally cannot destroy an env that failed to create, so a deployment that fails
        (or is interrupted) is destroyed here before the error goes on to Rally.
        """
        from benchbed import paths

        name = self._name()
        validate_name(name)
        config = _load(self.spec)
        try:
            Deployment.get(name)
        except NotFoundError:
            pass
        else:
            raise InputError(f"benchbed deployment '{name}' exists already; name another "
                             f"with the spec's 'name'")
        LOG.info("benchbed deployment %s: deploying (benchbed deployment show %s)", name, name)
        try:
            deployment = api.create(name, config, validated=True)
            credentials = self._credentials(deployment.uuid)
        except BaseException:
            self._destroy_failed(name)
            raise
        return credentials, {"deployment": name, "uuid": deployment.uuid,
                             "home": str(paths.home())}

    @staticmethod
    def _credentials(uuid: str) -> dict[str, Any]:
        """rally-openstack's own conversion of benchbed's `rally-spec` export."""
        spec = json.loads(api.export(uuid, "rally-spec"))["existing@openstack"]
        platform_data, _ = existing.OpenStack(spec).create()
        return dict(platform_data)

    @staticmethod
    def _destroy_failed(name: str) -> None:
        try:
            api.destroy(name)
        except NotFoundError:
            return
        except Exception as error:
            LOG.error("benchbed deployment %s could not be destroyed (%s); finish with: "
                      "benchbed deployment destroy --force %s", name,
                      masking.scrub(str(error)), name)

    def destroy(self) -> None:
        """benchbed's destroy: every ledger row gone, then the record. A deployment that is
        gone already (destroyed with benchbed itself) is not an error."""
        _use_home(self.plugin_data)
        try:
            api.destroy(self.plugin_data["uuid"])
        except NotFoundError:
            LOG.info("benchbed deployment %s is gone already", self.plugin_data["uuid"])

    def check_health(self) -> dict[str, Any]:
        """benchbed's own check (token, catalogue, every endpoint), failures named."""
        _use_home(self.plugin_data)
        try:
            results = api.check(self.plugin_data["uuid"])
        except Exception as error:
            return {"available": False, "message": masking.scrub(str(error)),
                    "traceback": masking.scrub(traceback.format_exc())}
        failed = [f"{r.target}: {r.detail}" for r in results if not r.ok]
        if failed:
            return {"available": False, "message": "; ".join(failed)}
        return {"available": True,
                "message": f"benchbed deployment {self.plugin_data['deployment']}: "
                           f"{len(results)} checks passed"}

    def info(self) -> dict[str, Any]:
        """The deployment as benchbed knows it (engine, status, services, servers) and the
        cloud as it answers (its service catalogue and Identity API version); no secret."""
        from benchbed.engines.keystone_check import _session

        _use_home(self.plugin_data)
        deployment = Deployment.get(self.plugin_data["uuid"])
        endpoints = deployment.endpoints
        cloud = endpoints["openstack"]
        session = _session(cloud, cloud.get("admin") or cloud["users"][0])
        catalog = session.auth.get_access(session).service_catalog.catalog or []
        version = session.get(cloud["auth_url"], authenticated=False).json()["version"]
        from benchbed import __version__

        return {"info": masking.mask({
            "benchbed": {"version": __version__, "deployment": deployment.name,
                         "uuid": deployment.uuid, "status": deployment.status.value,
                         "engine": deployment.config["type"]},
            "auth_url": cloud["auth_url"], "region_name": cloud["region_name"],
            "identity_version": version["id"],
            "services": sorted(({"type": s.get("type"), "name": s.get("name")}
                                for s in catalog), key=lambda s: str(s["type"])),
            "deployed_services": endpoints.get("services", []),
            "servers": [s.get("name") or s["host"] for s in endpoints.get("servers", [])],
        })}

    def _get_validation_context(self) -> dict[str, Any]:
        """What `existing@openstack` gives (Rally's env manager calls this private name):
        tasks validate as if run with temporary users, which the admin can make."""
        return {"users@openstack": {}}

    def cleanup(self, task_uuid: str | None = None) -> dict[str, Any]:
        """Delete the Keystone users, projects and roles named as Rally names what it makes
        (rally's own matcher, over every plugin that generates names; only `task_uuid`'s
        if given), each confirmed gone. A deployment that is not running has nothing to
        clean, and says so without an error (so that `rally env destroy` goes on)."""
        _use_home(self.plugin_data)
        try:
            deployment = Deployment.get(self.plugin_data["uuid"])
        except NotFoundError:
            return _report(f"benchbed deployment {self.plugin_data['deployment']} is gone: "
                           f"nothing to clean")
        if deployment.status != Status.FINISHED:
            return _report(f"benchbed deployment {deployment.name} is "
                           f"{deployment.status.value}: nothing to clean")
        return _sweep(deployment, _rally_names(task_uuid))


def _report(message: str, resources: dict[str, dict[str, int]] | None = None,
            errors: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A cleanup result in the shape Rally's env manager validates."""
    counts = (resources or {}).values()
    return {"message": message, "resources": resources or {}, "errors": errors or [],
            "discovered": sum(c["discovered"] for c in counts),
            "deleted": sum(c["deleted"] for c in counts),
            "failed": sum(c["failed"] for c in counts)}


def _rally_names(task_uuid: str | None) -> Callable[[str], bool]:
    """Whether a name is one Rally generated: the matcher rally-openstack's own cleanup uses,
    over every loaded plugin class that generates names (scenarios' `s_rally_...`,
    contexts' `c_rally_...`)."""
    classes = [cls for cls in discover.itersubclasses(rally_plugin.Plugin)
               if issubclass(cls, rally_utils.RandomNameGeneratorMixin)]

    def matches(name: str) -> bool:
        return bool(name) and rally_utils.name_matches_object(
            name, *classes, task_id=task_uuid, exact=False)

    return matches


def _sweep(deployment: Deployment, matches: Callable[[str], bool]) -> dict[str, Any]:
    from keystoneauth1 import exceptions as ks_exceptions

    from benchbed.engines.keystone_check import _session

    cloud = deployment.endpoints["openstack"]
    session = _session(cloud, cloud.get("admin") or cloud["users"][0])
    where = {"service_type": "identity", "interface": cloud.get("endpoint_type", "public"),
             "region_name": cloud.get("region_name"), "version": (3, 0)}
    resources: dict[str, dict[str, int]] = {}
    errors: list[dict[str, str]] = []
    for kind, collection in SWEPT:
        listed = session.get(f"/{collection}", endpoint_filter=where).json()[collection]
        found = [item for item in listed if matches(item.get("name", ""))]
        counts = resources[kind] = {"discovered": len(found), "deleted": 0, "failed": 0}
        for item in found:
            path = f"/{collection}/{item['id']}"
            try:
                session.delete(path, endpoint_filter=where, raise_exc=False)
                status = session.get(path, endpoint_filter=where, raise_exc=False).status_code
                failure = None if status == 404 else f"still there after delete (HTTP {status})"
            except ks_exceptions.ClientException as error:
                failure = str(error)
            if failure:
                counts["failed"] += 1
                errors.append({"resource_id": item["id"], "resource_type": kind,
                               "message": masking.scrub(f"{item['name']}: {failure}")})
            else:
                counts["deleted"] += 1
                LOG.info("deleted %s %s (%s)", kind, item["name"], item["id"])
    deleted = sum(c["deleted"] for c in resources.values())
    return _report(f"deleted {deleted} Keystone resource(s) with Rally's names from benchbed "
                   f"deployment {deployment.name}", resources, errors)
