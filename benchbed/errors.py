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
