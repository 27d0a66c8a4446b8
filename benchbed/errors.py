"""Error types whose class decides the CLI's exit code and the one line the user sees."""


class BenchbedError(Exception):
    """A runtime failure: exit code 1."""

    exit_code = 1


class InputError(BenchbedError):
    """Bad input or usage (config, arguments): exit code 2, nothing created."""

    exit_code = 2


class ConfigError(InputError):
    """A config value is wrong; names the config path at fault."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"config {path}: {message}" if path else f"config: {message}")


class NotFoundError(InputError):
    """A named deployment, image or plugin does not exist."""


class DatabaseError(BenchbedError):
    """The database refused or lost a statement (gone, restarting, disk full): one line."""


class BusyError(BenchbedError):
    """Another live process holds the deployment."""


class StatusError(BenchbedError):
    """The requested action is not allowed from the deployment's current status."""


class SSHError(BenchbedError):
    """SSH failed: unreachable host, rejected credentials, changed host key, failed command."""


class HostKeyChangedError(SSHError):
    """The server presented a different host key than the one recorded on first contact."""


class UnreachableError(SSHError):
    """A server did not answer SSH within the bound: down for now, or gone for good.

    `host` is the server's host as configured, so that `destroy` can say how to finish
    (`--abandon HOST`) when what is left lives on it.
    """

    def __init__(self, message: str, host: str) -> None:
        self.host = host
        super().__init__(message)


class ConnectionLostError(UnreachableError):
    """A server stopped answering in the middle of a command (keepalives unanswered, its
    sshd or the server itself gone)."""


class ParallelError(BenchbedError):
    """Some of the parallel tasks failed; carries every failure, not only the first."""

    def __init__(self, label: str, failures: list[tuple[str, BaseException]]) -> None:
        self.failures = failures
        first = "; ".join(f"{name}: {error}" for name, error in failures[:3])
        more = f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
        super().__init__(f"{label} failed for {len(failures)} item(s): {first}{more}")


def unreachable_hosts(error: BaseException | None) -> set[str]:
    """The hosts that did not answer SSH: in an error, in the failures it gathers, or in
    the error it was raised for (a step's one-line error keeps the original as context)."""
    if error is None:
        return set()
    if isinstance(error, UnreachableError):
        return {error.host}
    if isinstance(error, ParallelError):
        return {host for _, failure in error.failures for host in unreachable_hosts(failure)}
    return unreachable_hosts(error.__cause__ or error.__context__)
