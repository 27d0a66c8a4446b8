"""The verbs users and the CLI call: validate, create, destroy, recreate, check, export."""

from typing import Any

from benchbed import config as config_lib
from benchbed import masking, plugin
from benchbed.deployment import Deployment, Status, check_name
from benchbed.engines.base import CheckResult, Engine
from benchbed.errors import BenchbedError


def validate(config: dict[str, Any]) -> type[plugin.Plugin]:
    """Check a whole config, nested engines and providers included; creates nothing."""
    config_lib.check_data(config)
    masking.register_from(config)
    engine = plugin.validate(config, plugin.ENGINES)
    from benchbed import networks

    networks.check(config)
    return engine


def load_config(path: str) -> dict[str, Any]:
    config = config_lib.expand_env(config_lib.load_file(path))
    validate(config)
    return config


def engine_for(deployment: Deployment) -> Engine:
    engine_class = plugin.get(plugin.ENGINES, deployment.config["type"])
    return engine_class(deployment)


def create(name: str, config: dict[str, Any], validated: bool = False) -> Deployment:
    """Validate, record, deploy. The deployment row exists only if the config was valid.

    `validated` says the caller has just run `validate` on this very config (the CLI does,
    to fail before it prints anything), so that it is not checked twice.
    """
    check_name(name)
    if not validated:
        validate(config)
    deployment = Deployment.create(name, config)
    with deployment.lease():
        _deploy(deployment)
    return deployment


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
    deployment.set_endpoints(endpoints)
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
        deployment.set_status(Status.CLEANUP_FAILED, error=str(error))
        raise
    deployment.set_status(Status.CLEANUP_FINISHED)


def destroy(name: str, force: bool = False) -> Deployment:
    """Remove everything the deployment created, then its record and folder. Safe to re-run."""
    deployment = Deployment.get(name)
    with deployment.lease(force=force):
        _cleanup(deployment)
        deployment.delete()
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
    deployment = Deployment.get(name)
    deployment.require_status(Status.FINISHED, action="check")
    return engine_for(deployment).check()


def export(name: str, fmt: str) -> str:
    from benchbed.exporters import render

    deployment = Deployment.get(name)
    deployment.require_status(Status.FINISHED, action="export")
    return render(deployment, fmt)
