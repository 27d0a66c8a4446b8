"""The verbs users and the CLI call. Everything the CLI can do, a Python caller can do here.

What these functions return is safe to show: secrets are masked, except in `export`, whose
whole point is to hand credentials to a benchmark client.

    from benchbed import api
    api.create("lab", api.load_config("lab.yaml"))
    print(api.show("lab")["status"])
    clouds = api.export("lab", "clouds.yaml")
    api.destroy("lab")
"""

import os
import re
import shlex
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchbed import config as config_lib
from benchbed import lease, masking, paths, plugin
from benchbed.deployment import Deployment, Status, is_uuid, validate_name
from benchbed.engines.base import CheckResult, Engine
from benchbed.errors import (
    BenchbedError,
    InputError,
    NotFoundError,
    unreachable_hosts,
)
from benchbed.hostnet import routes

if TYPE_CHECKING:
    from benchbed.providers.base import Sweep
    from benchbed.tasks.model import TaskRun

# -- configs ---------------------------------------------------------------------------------


def validate(config: dict[str, Any], check_networks: bool = True) -> type[plugin.Plugin]:
    """Check a whole config, nested engines and providers included; creates nothing.

    The older tool's spellings (`name` for `type`, `DummyProvider`) are rewritten in place.
    Networks the config would make on this machine are checked last (benchbed.networks),
    unless the caller reports on them itself (`doctor`).
    """
    config_lib.validate_data(config)
    masking.register_from(config)
    plugin.normalize_legacy(config, plugin.ENGINES)
    engine = plugin.validate(config, plugin.ENGINES)
    routes.check(config)
    if check_networks:
        from benchbed import networks

        networks.check(config)
    return engine


def load_config(path: str | Path, check_networks: bool = True) -> dict[str, Any]:
    """Read a YAML or JSON config file, expand ${ENV} references and validate it."""
    config = config_lib.expand_env(config_lib.load_file(path))
    validate(config, check_networks=check_networks)
    return config


def config_from_env(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """An ExistingCloud config from OS_* variables (`create --fromenv`), validated."""
    from benchbed.engines.existing_cloud import config_from_env as from_env

    config = from_env(environ)
    validate(config)
    return config


# -- lifecycle -------------------------------------------------------------------------------


def engine_for(deployment: Deployment) -> "Engine[Any]":
    """The deployment's root engine: `Engine(deployment)`, as the specification has it."""
    from benchbed.engines.base import engine_class

    return engine_class(deployment.config)(deployment)


def create(name: str, config: dict[str, Any], validated: bool = False,
           preflight: bool = True) -> Deployment:
    """Validate, ask the world, record, deploy. The deployment row exists only if the config
    was valid and the world as the engine's preflight expects (an ExistingCloud's Keystone
    gives its users tokens).

    `validated` says the caller has just run `validate` on this very config (the CLI does,
    to fail before it prints anything), so that it is not checked twice. `preflight=False`
    records a cloud that cannot be asked now (`deployment check` asks later).
    """
    from benchbed.engines.base import engine_class

    validate_name(name)
    if not validated:
        validate(config, check_networks=False)
    if preflight:
        engine = engine_class(config)
        engine.preflight(engine.parse_config(config))
    with _claiming_networks(config):
        deployment = Deployment.create(name, config)
    with deployment.lease():
        _deploy(deployment)
    return deployment


# This machine's networks are shared by every BENCHBED_HOME on it: one lock for all of them.
HOST_STATE = Path("/run/benchbed")


@contextmanager
def _claiming_networks(config: dict[str, Any]) -> Iterator[None]:
    """Check the networks `config` would make on this machine (benchbed.networks) and, in
    the block, record the deployment that claims them, as one step: two creates at once
    cannot both pass the check. Only configs that make networks wait for the lock."""
    from benchbed import networks

    if next(networks.claims(config), None) is None:
        yield
        return
    with lease.file_lock(_network_lock(), "the check of this machine's networks", timeout=60):
        networks.check(config)
        yield


def _network_lock() -> Path:
    """The machine's lock under /run; a user who cannot write there makes no network on this
    machine either, and their creates are kept apart by a lock under their home."""
    try:
        HOST_STATE.mkdir(mode=0o755, exist_ok=True)
    except OSError:
        return paths.home() / "networks.lock"
    return HOST_STATE / "networks.lock" if os.access(HOST_STATE, os.W_OK) else \
        paths.home() / "networks.lock"


def _deploy(deployment: Deployment) -> None:
    deployment.set_status(Status.STARTED)
    try:
        with deployment.step("deploy", deployment.config["type"]):
            endpoints = engine_for(deployment).deploy()
    except BaseException as error:
        message = str(error) or type(error).__name__
        deployment.logger.error("deploy failed: %s", message)
        deployment.set_status(Status.FAILED, error=message)
        raise
    # stored as JSON: read back as the same shape (benchbed.endpoints.stored)
    deployment.set_endpoints(dict(endpoints))
    deployment.set_status(Status.FINISHED)


def _cleanup(deployment: Deployment) -> None:
    deployment.set_status(Status.CLEANUP_STARTED)
    try:
        with deployment.step("cleanup", deployment.config["type"]):
            engine_for(deployment).cleanup()
        left = deployment.remaining_resources()
        if left:
            raise BenchbedError(f"cleanup left {left} resource(s) in the ledger; "
                                f"re-run destroy")
    except BaseException as error:
        how = _how_to_finish(deployment, error)
        message = f"{error or type(error).__name__}{how}"
        deployment.set_status(Status.CLEANUP_FAILED, error=message)
        if how:
            raise BenchbedError(message) from None
        raise
    deployment.set_status(Status.CLEANUP_FINISHED)


def _how_to_finish(deployment: Deployment, error: BaseException) -> str:
    """When what is left lives on servers that did not answer: how to finish without them.

    A server may only be down for a while, so nothing is forgotten here; if it is gone for
    good, only the user can say so (`abandon`).
    """
    from benchbed.ledger import lives_on

    rows = deployment.all_resources()
    hosts = [host for host in sorted(unreachable_hosts(error))
             if any(lives_on(row, host) for row in rows)]
    if not hosts:
        return ""
    named = " and ".join(hosts)
    flags = " ".join(f"--abandon {shlex.quote(host)}" for host in hosts)
    return (f"; if {named} {'is' if len(hosts) == 1 else 'are'} gone for good, finish with: "
            f"benchbed deployment destroy {shlex.quote(deployment.name)} {flags} "
            f"(forgets what is left on {'it' if len(hosts) == 1 else 'them'})")


def abandon(name: str, hosts: Sequence[str], force: bool = False) -> list[dict[str, str]]:
    """Forget the ledger rows that live on servers gone for good, on the caller's word.

    Nothing can reach those servers, so what the rows name is left as it is; the returned
    rows (host, scope, kind, name) say what, and each is recorded in the timeline. A host
    that no row lives on is refused before anything is forgotten. `destroy` then finishes.
    """
    from benchbed.ledger import lives_on, server_of

    deployment = Deployment.get(name)
    with deployment.lease(force=force):
        rows = deployment.all_resources()
        chosen = {host: [row for row in rows if lives_on(row, host)] for host in hosts}
        unknown = [host for host, found in chosen.items() if not found]
        if unknown:
            servers = sorted({f"{server[0]}:{server[1]}" for row in rows
                              if (server := server_of(row)) is not None})
            raise InputError(f"no ledger row of deployment '{deployment.name}' lives on "
                             f"{', '.join(repr(host) for host in unknown)} (rows live on: "
                             f"{', '.join(servers) or 'no server'})")
        abandoned: list[dict[str, str]] = []
        forgotten: set[int] = set()
        for host, found in chosen.items():
            for row in found:
                if row.id in forgotten:
                    continue
                with deployment.step("abandon", f"{row.kind} {row.name} on {host}"):
                    deployment.logger.warning("abandoned %s %s (%s) on %s: gone for good, "
                                              "by the user's word", row.kind, row.name,
                                              row.scope, host)
                    deployment.ledger(row.scope).forget(row)
                forgotten.add(row.id)
                abandoned.append({"host": host, "scope": row.scope, "kind": row.kind,
                                  "name": row.name})
    return abandoned


def destroy(name: str, force: bool = False) -> Deployment:
    """Remove everything the deployment created, then its record and folder. Safe to re-run."""
    deployment = Deployment.get(name)
    with deployment.lease(force=force):
        _cleanup(deployment)
        deployment.delete()
    try:
        selected = current()
    except InputError:
        selected = None
    if selected == deployment.uuid:
        _current_file().unlink(missing_ok=True)
    return deployment


def recreate(name: str, force: bool = False) -> Deployment:
    """Clean up and deploy again from the stored config, keeping name and uuid."""
    deployment = Deployment.get(name)
    with deployment.lease(force=force):
        _cleanup(deployment)
        deployment.set_endpoints({})
        _deploy(deployment)
    return deployment


def check(name: str) -> list[CheckResult]:
    """Prove the deployed system answers; details are masked."""
    deployment = Deployment.get(name)
    deployment.require_status(Status.FINISHED, action="check")
    return [CheckResult(masking.scrub(r.target), r.ok, masking.scrub(r.detail))
            for r in engine_for(deployment).check()]


def export(name: str, fmt: str) -> str:
    """What a benchmark client reads (openrc, clouds.yaml, ...): credentials in clear."""
    from benchbed.exporters import render

    deployment = Deployment.get(name)
    deployment.require_status(Status.FINISHED, action="export")
    return render(deployment, fmt)


def export_formats() -> list[str]:
    from benchbed.exporters import FORMATS

    return list(FORMATS)


# -- reading ---------------------------------------------------------------------------------


def list_deployments() -> list[dict[str, Any]]:
    """Every deployment: uuid, name, status, created_at, parent_uuid, oldest first."""
    from benchbed.db.fastread import list_deployments as fast_list

    rows = fast_list()
    return rows if rows is not None else Deployment.list_rows()


def show(name: str) -> dict[str, Any]:
    """Status, endpoints, ledger and timeline of one deployment, secrets masked."""
    from benchbed import report as report_lib

    found = Deployment.get(name)
    timeline = report_lib.timeline(found.timeline())
    resources = [{"scope": r.scope, "kind": r.kind, "name": r.name, "state": r.state}
                 for r in found.all_resources()]
    return masking.mask({
        "uuid": found.uuid, "name": found.name, "status": found.status.value,
        "type": found.config.get("type"), "parent_uuid": found.parent_uuid,
        "created_at": found.created_at.isoformat(timespec="seconds"),
        "updated_at": found.updated_at.isoformat(timespec="seconds"),
        "held_by": found.lease_owner, "error": found.error, "endpoints": found.endpoints,
        "resources": resources, "lanes": report_lib.fold(timeline), "timeline": timeline,
        "log": str(found.log_path),
    })


def report(name: str, fmt: str = "html") -> str:
    """Where the time went, status, ledger and endpoints: an HTML page or JSON, masked."""
    from benchbed import report as report_lib

    return report_lib.render(Deployment.get(name), fmt)


def config(name: str) -> dict[str, Any]:
    """The deployment's stored config, secrets masked."""
    return masking.mask(Deployment.get(name).config)


def forget_host_key(name: str, address: str) -> None:
    """Forget the recorded host key of `address` (host:port) after a deliberate rebuild."""
    from benchbed import host_keys

    if not host_keys.forget(Deployment.get(name), address):
        raise NotFoundError(f"no host key recorded for {address} in '{name}'")


# -- the current deployment ------------------------------------------------------------------


def _current_file() -> Path:
    return paths.home() / "current"


def use(name: str) -> str:
    """Make `name` the deployment commands act on when none is given; returns its name.

    The file holds the uuid: a deployment renamed or re-created under the same name is
    never picked by mistake.
    """
    deployment = Deployment.get(name)
    paths.write_private(_current_file(), deployment.uuid + "\n")
    return deployment.name


def current() -> str | None:
    """The uuid of the deployment selected with `use`, if any, read exactly as written:
    nothing in it is stripped into the name of another deployment."""
    path = _current_file()
    try:
        text = path.read_text(encoding="utf-8").removesuffix("\n")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read {path}: {error}") from None
    if not is_uuid(text):
        raise InputError(f"{path} does not hold a deployment uuid; select one with "
                         f"'benchbed deployment use NAME'")
    return text


# -- plugins and images ----------------------------------------------------------------------


def plugins() -> list[dict[str, str]]:
    """The installed engines and providers, found through entry points."""
    rows = []
    for group, kind in ((plugin.ENGINES, "engine"), (plugin.PROVIDERS, "provider")):
        for type_name in plugin.names(group):
            rows.append({"kind": kind, "name": type_name,
                         "description": plugin.get(group, type_name).describe()})
    return rows


def image_store(provider: str) -> Any:
    """The image store of a provider technology (entry point group `benchbed.images`)."""
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group="benchbed.images")}
    # the provider's type name says the same: VirshProvider's store is `virsh`
    store = provider if provider in found else provider.lower().removesuffix("provider")
    if store not in found:
        raise InputError(f"no image store for provider '{provider}' "
                         f"(known: {', '.join(sorted(found))})")
    return found[store].load()()


def image_build(provider: str, name: str | None = None, release: str = "bookworm",
                rebuild: bool = False) -> dict[str, Any]:
    return image_store(provider).build(name=name, release=release, rebuild=rebuild)


def image_list(provider: str) -> list[dict[str, Any]]:
    return image_store(provider).list()


def image_delete(provider: str, name: str) -> None:
    image_store(provider).delete(name)


IMAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def save_image(deployment_name: str, image: str, force: bool = False) -> list[dict[str, Any]]:
    """Turn the servers of a finished deployment into images of their providers.

    A deployment whose `image` names one starts from that system as it was (packages,
    databases, configuration) and its engine changes only what must differ per deployment.
    The images outlive the deployment; `image list` names where each came from. `force`
    breaks the lease of a holder that is gone (a save that was killed).
    """
    from benchbed.providers.base import ServerProvider

    if not IMAGE_NAME.fullmatch(image):
        raise InputError(f"'{image[:80]}' is not a valid image name (letters, digits, '.', "
                         f"'_', '-'; at most 63)")
    deployment = Deployment.get(deployment_name)
    if deployment.status != Status.FINISHED:
        raise InputError(f"cannot save deployment '{deployment.name}': it is "
                         f"{deployment.status} (needs {Status.FINISHED})")
    origin = {"deployment": deployment.name, "uuid": deployment.uuid,
              "engine": deployment.config["type"], "config": masking.mask(deployment.config)}
    saved: list[dict[str, Any]] = []
    with deployment.lease(force=force), deployment.step("save images", image):
        pending: list[plugin.Plugin] = [engine_for(deployment)]
        while pending:
            node = pending.pop(0)
            pending += node.nested_plugins()
            if isinstance(node, ServerProvider):
                saved += node.save_images(image, origin)
    if not saved:
        raise InputError(f"deployment '{deployment.name}' has no servers whose provider can "
                         f"save them as images (LxcProvider and VirshProvider can)")
    return saved


# -- cloud garbage ---------------------------------------------------------------------------


def gc(config_file: str, delete: bool = False) -> "Sweep":
    """Find, and with `delete` remove, the cloud resources benchbed tagged for a provider
    config whose deployment is gone from this database or whose expiry has passed."""
    provider_config = config_lib.expand_env(config_lib.load_file(config_file))
    masking.register_from(provider_config)
    plugin.normalize_legacy(provider_config, plugin.PROVIDERS)
    from benchbed.engines.base import provider_class

    plugin.validate(provider_config, plugin.PROVIDERS)
    found = provider_class(provider_config)
    typed = found.parse_config(provider_config)
    sweep = found.find_strays(typed, Deployment.uuids)
    if delete and sweep.strays:
        found.delete_strays(typed, sweep.strays)
    return sweep


def doctor(config: dict[str, Any] | None = None) -> list[Any]:
    """Run the host checks the plugins declare: for a (validated) config, or for all of them."""
    from benchbed import doctor as doctor_lib

    return doctor_lib.run(config)


# -- benchmark runs --------------------------------------------------------------------------


def task_run(deployment: str, task_file: str, tags: dict[str, str] | None = None,
             interval: float = 1.0, rally: str | None = None,
             progress: "Callable[[str], None] | None" = None) -> "TaskRun":
    """Run a Rally task against a deployment with the system's samples beside it, and record
    it; bad input (no such deployment, not an OpenStack, not a Rally task, no Rally) is
    refused before anything is recorded. `run.sla_ok` says whether every SLA held."""
    from benchbed.tasks import runner

    return runner.run(deployment, task_file, tags, interval, rally, progress)


def task_runs(deployment: str | None = None) -> "list[TaskRun]":
    """Every benchmark run, oldest first; with `deployment`, that deployment name's."""
    from benchbed.tasks import store

    return store.runs(deployment)


def task_show(run: str) -> dict[str, Any]:
    """A run (by uuid or a unique prefix) with its iterations, secrets masked."""
    from benchbed.tasks import runner

    return runner.show(run)


def task_report(run: str, fmt: str = "html") -> str:
    """A run's iterations, the system's CPU and memory and the deployment's timeline on one
    time axis: a self-contained HTML page, or the same data as JSON; secrets masked."""
    from benchbed.tasks import report as task_report_lib

    return task_report_lib.render(run, fmt)


def task_compare(a: str, b: str, different_tasks: bool = False) -> dict[str, Any]:
    """Run B against run A (ids or unique prefixes): per scenario and atomic action the
    medians, p95s, ratio B/A with its bootstrap interval and a verdict; per service the
    CPU-seconds per iteration (benchbed.tasks.compare).

    Runs of different tasks (their digests differ) are refused unless `different_tasks`:
    a verdict between two different workloads says nothing about the system, and a CI
    pipeline that compared them by mistake would pass or fail on it. With the flag, the
    result carries a warning saying so."""
    from benchbed.tasks import compare, store

    run_a, run_b = store.get(a), store.get(b)
    if run_a.uuid == run_b.uuid:
        raise InputError(f"A and B are the same run ({run_a.uuid}): compare two runs")
    for label, run in (("A", run_a), ("B", run_b)):
        if run.status == "running":
            raise InputError(f"run {label} ({run.uuid}) is still running or was interrupted: "
                             "it has no iterations to compare")
    warnings = []
    if run_a.task_digest != run_b.task_digest:
        message = (f"runs of different tasks: A ran {run_a.task_name} "
                   f"({run_a.task_digest[:12]}), B ran {run_b.task_name} "
                   f"({run_b.task_digest[:12]})")
        if not different_tasks:
            raise InputError(f"{message}; pass --different-tasks to compare them anyway")
        warnings.append(message)
    iterations_a, iterations_b = store.iterations(run_a.uuid), store.iterations(run_b.uuid)
    for label, run, iterations in (("A", run_a, iterations_a), ("B", run_b, iterations_b)):
        if not iterations:
            raise InputError(f"run {label} ({run.uuid}) has no iterations to compare "
                             f"(status {run.status})")
    result = compare.compare(run_a, iterations_a, store.samples(run_a.uuid),
                             run_b, iterations_b, store.samples(run_b.uuid))
    return dict(masking.mask({**result, "warnings": warnings}))
