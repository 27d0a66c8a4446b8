"""ServersEngine: servers from any provider, handed over as endpoints (for non-OpenStack work)."""

from typing import Any

from benchbed.engines.base import (
    SERVER_REQUEST_PROPERTIES,
    CheckResult,
    Engine,
    validate_server_request,
)
from benchbed.parallel import run_parallel
from benchbed.plugin import PROVIDERS
from benchbed.server import Server

SSH_READY_TIMEOUT = 120


class ServersEngine(Engine):
    """Create servers through a provider and return how to reach them."""

    CONFIG_SCHEMA = {
        "type": "object",
        "properties": {
            "type": {"const": "ServersEngine"},
            **SERVER_REQUEST_PROPERTIES,
            "amount": {"type": "integer", "minimum": 1, "maximum": 1000},
            "ssh_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
            # false: hand the servers over once the provider has them, without logging in
            "wait_for_ssh": {"type": "boolean"},
        },
        "required": ["type", "provider"],
        "additionalProperties": False,
    }
    NESTED = {"provider": PROVIDERS}

    @classmethod
    def validate_config(cls, config: dict[str, Any], path: str, *,
                        has_parent: bool = False) -> None:
        validate_server_request(config["provider"], path, config.get("image"),
                                config.get("flavor"), amount=config.get("amount"),
                                ssh=config.get("wait_for_ssh", True))

    def deploy(self) -> dict[str, Any]:
        provider = self.provider()
        amount = self.config.get("amount") or provider.default_amount()
        with self.deployment.step("create servers", f"{amount} x {provider.raw_config['type']}"):
            servers = provider.create_servers(image_uuid=self.config.get("image"),
                                              type_id=self.config.get("flavor"), amount=amount)
        if self.config.get("wait_for_ssh", True):
            with self.deployment.step("wait for SSH", f"{len(servers)} server(s)"):
                run_parallel("waiting for SSH", servers, self._wait_ready, describe=_describe)
        return {"servers": [server.to_dict() for server in servers]}

    def _wait_ready(self, server: Server) -> None:
        with self.deployment.step("SSH ready", _describe(server),
                                  lane=server.name or server.host):
            server.ssh.wait_ready(timeout=self.config.get("ssh_timeout", SSH_READY_TIMEOUT))
            server.ssh.run("true", timeout=30)

    def servers(self) -> list[Server]:
        return [Server.from_dict(data, deployment=self.deployment)
                for data in self.endpoints.get("servers", [])]

    def check(self) -> list[CheckResult]:
        def probe(server: Server) -> CheckResult:
            try:
                result = server.ssh.run("uname -n", timeout=30)
                return CheckResult(_describe(server), True, f"ssh ok: {result.stdout.strip()}")
            except Exception as error:
                return CheckResult(_describe(server), False, str(error))
            finally:
                server.close()

        return run_parallel("checking servers", self.servers(), probe, describe=_describe)


def _describe(server: Server) -> str:
    return f"{server.user}@{server.address}"
