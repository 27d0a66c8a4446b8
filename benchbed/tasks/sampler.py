"""The system's own resource use while a benchmark runs (interface; built in issue 22)."""

from benchbed.server import Server
from benchbed.tasks.model import Sample


class Sampler:
    """Samples CPU-seconds and resident memory per service of `servers` every `interval`
    seconds, from `start()` until `stop()`, which returns every sample taken."""

    def __init__(self, servers: list[Server], interval: float) -> None:
        self.servers = servers
        self.interval = interval

    def start(self) -> None:
        """Begin sampling in the background."""

    def stop(self) -> list[Sample]:
        """End sampling; every sample taken, oldest first."""
        return []
