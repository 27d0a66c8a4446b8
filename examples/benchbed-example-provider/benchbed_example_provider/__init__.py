"""LoopbackSshd: each server is an sshd on 127.0.0.1, on a free port, for the deployment's key."""

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from benchbed import hostcheck
from benchbed.errors import InputError
from benchbed.keys import deployment_key
from benchbed.ledger import Resource
from benchbed.plugin import ResourceKind
from benchbed.providers.base import Capabilities, ServerProvider
from benchbed.server import Server
from benchbed.settings import PluginConfig, setting

SSHD_CONFIG = """ListenAddress 127.0.0.1:{port}
HostKey {directory}/host_key
AuthorizedKeysFile {directory}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
UsePAM no
StrictModes no
"""


@dataclass(frozen=True, kw_only=True)
class LoopbackSshdConfig(PluginConfig):
    amount: int = setting("Servers to start when the engine does not say how many.", 1,
                          minimum=1, maximum=20)
    sshd: str = setting("The sshd program to run.", "/usr/sbin/sshd", pattern="^/[\\w/.-]+$")


class LoopbackSshd(ServerProvider[LoopbackSshdConfig]):
    """sshd processes on 127.0.0.1, one per server (an example for plugin authors)."""

    Config = LoopbackSshdConfig
    CAPABILITIES = Capabilities(shares_host=True, chooses_image=False, chooses_size=False)
    EXAMPLE = {"type": "LoopbackSshd"}

    @classmethod
    def host_requirements(cls, config: LoopbackSshdConfig | None) -> list[hostcheck.HostCheck]:
        sshd = config.sshd if config else LoopbackSshdConfig.sshd
        return [hostcheck.command(sshd, "openssh-server"),
                hostcheck.command("ssh-keygen", "openssh-client")]

    def default_amount(self) -> int:
        return self.config.amount

    def create_servers(self, image_uuid: str | None = None, type_id: str | None = None,
                       amount: int = 1) -> list[Server]:
        if image_uuid or type_id:
            raise InputError("LoopbackSshd servers are this machine: no image or size to choose")
        key_path, public_key = deployment_key(self.deployment)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
        return [self._start(f"sshd-{self.tag}-{index}", key_path, public_key)
                for index in range(amount)]

    def _start(self, name: str, key_path: Path, public_key: str) -> Server:
        directory, port = self.deployment.directory / name, _free_port()
        # the row comes first: were benchbed killed from here on, destroy still finds the sshd
        with self.ledger.creating("sshd", name, directory=str(directory),
                                  ssh_address=f"127.0.0.1:{port}") as row:
            directory.mkdir(mode=0o700)
            (directory / "authorized_keys").write_text(public_key + "\n")
            (directory / "sshd_config").write_text(SSHD_CONFIG.format(port=port,
                                                                      directory=directory))
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            str(directory / "host_key")], check=True)
            process = subprocess.Popen(_argv(self.config.sshd, directory),
                                       start_new_session=True, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            row.data.update(pid=process.pid, sshd=self.config.sshd)
            self.ledger.update(row)
        return Server(host="127.0.0.1", port=port, user="root", key=str(key_path), name=name,
                      deployment=self.deployment)

    def _delete_sshd(self, resource: Resource) -> None:
        if self._sshd_runs(resource):
            os.kill(resource.data["pid"], 9)  # the pid is still that sshd: nothing else
            for _ in range(100):  # the kernel takes a moment to finish it off
                if not self._sshd_runs(resource):
                    break
                time.sleep(0.05)
        shutil.rmtree(resource.data["directory"], ignore_errors=True)

    def _sshd_runs(self, resource: Resource) -> bool:
        """Whether the recorded pid is alive and still this row's sshd (its config file)."""
        proc = Path("/proc", str(resource.data.get("pid", "none")))
        try:  # a process that is gone, or a zombie, has no exe link
            program = os.readlink(proc / "exe")
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return False
        return (program == os.path.realpath(resource.data["sshd"])
                and f" -f {resource.data['directory']}/sshd_config " in title)

    RESOURCES = {"sshd": ResourceKind(delete=_delete_sshd, exists=_sshd_runs)}


def _argv(sshd: str, directory: Path) -> list[str]:
    return [sshd, "-D", "-f", f"{directory}/sshd_config", "-E", f"{directory}/sshd.log"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
