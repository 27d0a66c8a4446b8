"""Run a program on this machine with a timeout and a clear error (argv, never a shell)."""

import subprocess
from collections.abc import Sequence

from benchbed import masking
from benchbed.errors import BenchbedError


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 120,
        input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        completed = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                                   input=input_text)
    except FileNotFoundError:
        raise BenchbedError(f"{argv[0]} is not installed on this machine") from None
    except subprocess.TimeoutExpired:
        raise BenchbedError(f"'{' '.join(argv)[:120]}' timed out after {timeout:.0f}s") from None
    if check and completed.returncode != 0:
        tail = (completed.stderr.strip() or completed.stdout.strip())[-400:]
        raise BenchbedError(masking.scrub(
            f"'{' '.join(argv)[:120]}' exited {completed.returncode}: {tail}"))
    return completed
