"""Install steps on a server, as the engines that install software (Debian, DevStack) run
them: one timeline step each, whose failure says in one line which server and which step."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from benchbed.errors import BenchbedError

if TYPE_CHECKING:
    from benchbed.deployment import Deployment
    from benchbed.server import Server


class DeployStepError(BenchbedError):
    """An install step failed on a server; the message names both."""


def where(server: "Server") -> str:
    """The server as a failure names it: user@host:port."""
    return f"{server.user}@{server.address}"


@contextmanager
def server_step(deployment: "Deployment", server: "Server", name: str,
                detail: str | None = None, *, lane: str | None = None) -> Iterator[None]:
    """A timeline step (`lane`: the server's own in a report, else its parent's) whose
    failure becomes a DeployStepError naming the server and the step, on one line."""
    at = where(server)
    with deployment.step(name, detail or at, lane=lane):
        try:
            yield
        except DeployStepError:
            raise
        except Exception as error:
            message = str(error).removeprefix(f"{at}: ")
            message = "; ".join(line.strip() for line in message.splitlines() if line.strip())
            raise DeployStepError(f"{at}: step '{name}' failed: "
                                  f"{message or type(error).__name__}") from None
