"""What a plugin needs of this machine, as checks it declares (`Plugin.host_requirements`).

Each check says what it looks at, finds out without changing anything, and says what to do
when it fails. `benchbed doctor` only runs and prints them (benchbed/doctor.py).
"""

import importlib
import ipaddress
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchbed import networks
from benchbed.errors import BenchbedError

INSTALL = "apt-get install -y --no-install-recommends"
DAEMONS = "tools/host-daemons.sh starts it"


@dataclass(frozen=True)
class HostCheck:
    """One thing this machine must have; `probe` returns None if it has it, else what is wrong."""

    what: str
    probe: Callable[[], str | None]
    fix: str


def command(name: str, package: str) -> HostCheck:
    """A program on PATH (or at an absolute path), from a Debian package."""
    def probe() -> str | None:
        found = shutil.which(name)
        return None if found and os.access(found, os.X_OK) else "not found"

    return HostCheck(f"command {name}", probe, f"{INSTALL} {package}")


def root() -> HostCheck:
    def probe() -> str | None:
        return None if os.geteuid() == 0 else f"running as uid {os.geteuid()}"

    return HostCheck("running as root", probe, "run benchbed as root: it makes network "
                     "devices, namespaces, containers and VMs")


def python_module(module: str, extra: str) -> HostCheck:
    """A Python module of one of benchbed's extras, importable by this interpreter."""
    def probe() -> str | None:
        try:
            importlib.import_module(module)
        except ImportError as error:
            return f"cannot import {module}: {error}"
        return None

    return HostCheck(f"python module {module}", probe,
                     f"pip install 'benchbed[{extra}]' in benchbed's virtualenv")


def daemon(name: str, start: str = DAEMONS) -> HostCheck:
    """A process of exactly this name is running (read from /proc, nothing is signalled)."""
    def probe() -> str | None:
        for comm in Path("/proc").glob("[0-9]*/comm"):
            try:
                if comm.read_text().strip() == name:
                    return None
            except OSError:
                continue
        return "not running"

    return HostCheck(f"daemon {name}", probe, start)


def kernel(what: str, path: str, fix: str) -> HostCheck:
    """A kernel feature, seen as a path the kernel shows when it has it."""
    return HostCheck(f"kernel {what}", lambda: None if Path(path).exists() else
                     f"{path} is missing", fix)


def filesystem(name: str) -> HostCheck:
    """A filesystem type the kernel has, built in or as a module it can load."""
    def probe() -> str | None:
        if any(line.split()[-1] == name for line in
               Path("/proc/filesystems").read_text().splitlines() if line.strip()):
            return None
        loadable = subprocess.run(["modinfo", "-n", name], capture_output=True, text=True,
                                  check=False) if shutil.which("modinfo") else None
        return None if loadable and loadable.returncode == 0 else "not in /proc/filesystems " \
            "and no module to load"

    return HostCheck(f"kernel filesystem {name}", probe,
                     f"load it (modprobe {name}) or use a kernel that has it")


def device(path: str, fix: str) -> HostCheck:
    """A device node this process may read and write."""
    def probe() -> str | None:
        if not Path(path).exists():
            return "does not exist"
        return None if os.access(path, os.R_OK | os.W_OK) else "not readable and writable"

    return HostCheck(f"device {path}", probe, fix)


def readable_file(path: str, fix: str) -> HostCheck:
    def probe() -> str | None:
        expanded = Path(path).expanduser()
        if not expanded.is_file():
            return "does not exist"
        return None if os.access(expanded, os.R_OK) else "not readable"

    return HostCheck(f"file {path}", probe, fix)


def free_network(network: str, key: str, own_bridge: str | None = None) -> HostCheck:
    """No address or route of this machine overlaps the network (but benchbed's own bridge
    for it, which deployments on one network share)."""
    def probe() -> str | None:
        try:
            routes = networks.ip_json("route", "show", "table", "all")
        except BenchbedError as error:
            return str(error)
        clash = networks.overlapping_route(routes, ipaddress.IPv4Network(network),
                                           own_bridge or "")
        return f"overlaps {clash}" if clash else None

    return HostCheck(f"network {network} is free", probe,
                     f"choose another '{key}' in the config, or remove what uses it")
