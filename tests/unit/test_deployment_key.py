"""The deployment's key pair under parallel first use: a multihost controller and its nodes
ask for it from their own threads, and each must get the one pair that is on disk."""

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import paramiko

from benchbed.keys import deployment_key

THREADS = 8


def _first_use_from_threads(directory: Path) -> list[str]:
    deployment: Any = SimpleNamespace(directory=directory, name="keyed")
    start = threading.Barrier(THREADS)
    public_lines: list[str] = []

    def ask() -> None:
        start.wait()
        public_lines.append(deployment_key(deployment)[1])

    threads = [threading.Thread(target=ask) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return public_lines


def test_parallel_first_use_gives_every_thread_the_pair_on_disk(tmp_path: Path) -> None:
    for round_number in range(10):
        directory = tmp_path / str(round_number)
        directory.mkdir()
        public_lines = _first_use_from_threads(directory)
        private = paramiko.Ed25519Key.from_private_key_file(str(directory / "id_ed25519"))
        on_disk = f"{private.get_name()} {private.get_base64()}"
        assert len(public_lines) == THREADS
        assert {line.rsplit(" ", 1)[0] for line in public_lines} == {on_disk}
        assert (directory / "id_ed25519.pub").read_text().startswith(on_disk)
