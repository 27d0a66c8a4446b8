"""ServersEngine: servers from any provider, handed over as endpoints (for non-OpenStack work)."""

from dataclasses import dataclass
from typing import Any

from benchbed.endpoints import Endpoints, server_entry
from benchbed.engines.base import (
    SERVER_REQUEST_PROPERTIES,
    CheckResult,
    Engine,
    validate_server_request,
)
from benchbed.parallel import run_parallel
from benchbed.plugin import PROVIDERS
from benchbed.ports import PeerPort
from benchbed.providers.existing_servers import LOCALHOST_SERVERS
from benchbed.server import Server
from benchbed.settings import PluginConfig, setting


@dataclass(frozen=True, kw_only=True)
class ServersEngineConfig(PluginConfig):
    provider: dict[str, Any] = setting("The server provider that gives the servers.")
    image: str | None = setting("The image the provider starts the servers from (its "
                                "default when omitted).", None,
                                pattern=SERVER_REQUEST_PROPERTIES["image"]["pattern"])
    flavor: str | None = setting("The size of the servers (the provider's default when "
                                 "omitted).", None,
                                 pattern=SERVER_REQUEST_PROPERTIES["flavor"]["pattern"])
    amount: int | None = setting("How many servers (the provider's default amount when "
                                 "omitted).", None, minimum=1, maximum=1000)
    ssh_timeout: float = setting("Seconds to wait for each server to answer SSH.", 120,
                                 exclusiveMinimum=0, maximum=3600)
    wait_for_ssh: bool = setting("Whether to log in to each server before handing it over "
                                 "(false: hand the servers over once the provider has "
                                 "them).", True)
    peer_ports: list[PeerPort] = setting(
        "The ports what you run on these servers listens on for the deployment's other "
        "servers ({protocol: tcp|udp, port: N}); a MultihostEngine's cloud providers open "
        "them between its servers only.", [], uniqueItems=True, maxItems=50)


class ServersEngine(Engine[ServersEngineConfig]):
    """Create servers through a provider and return how to reach them."""

    EXAMPLE = {"type": "ServersEngine", "provider": LOCALHOST_SERVERS}

    Config = ServersEngineConfig
    NESTED = {"provider": PROVIDERS}

    @classmethod
    def peer_ports(cls, config: ServersEngineConfig) -> frozenset[PeerPort]:
        """Those of its config: benchbed runs nothing on these servers, the user does."""
        return frozenset(config.peer_ports)

    @classmethod
    def validate_config(cls, config: ServersEngineConfig, path: str, *,
                        has_parent: bool = False) -> None:
        validate_server_request(config.provider, path, config.image, config.flavor,
                                amount=config.amount, ssh=config.wait_for_ssh)

    def deploy(self) -> Endpoints:
        provider = self.provider()
        amount = self.config.amount or provider.default_amount()
        with self.deployment.step("create servers", f"{amount} x {provider.raw_config['type']}"):
            servers = provider.create_servers(image_uuid=self.config.image,
                                              type_id=self.config.flavor, amount=amount)
        if self.config.wait_for_ssh:
            with self.deployment.step("wait for SSH", f"{len(servers)} server(s)"):
                run_parallel("waiting for SSH", servers, self._wait_ready, describe=_describe)
        return {"servers": [server_entry(server) for server in servers]}

    def _wait_ready(self, server: Server) -> None:
        with self.deployment.step("SSH ready", _describe(server),
                                  lane=server.name or server.host):
            server.ssh.wait_ready(timeout=self.config.ssh_timeout)
            server.ssh.run("true", timeout=30)

    def servers(self) -> list[Server]:
        return [Server.from_dict(dict(data), deployment=self.deployment)
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
