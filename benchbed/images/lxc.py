"""LXC base images: one Debian container per host and release, built once and cloned from.

A base image is an ordinary (never started) LXC container made by the `debian` template, with
what every clone must not share taken out (SSH host keys, machine-id, DHCP leases) and a
`benchbed-image.json` marker written last, so a build that was killed is recognised and rebuilt.
It lives in LXC's own container store, not under BENCHBED_HOME: it is a cache that outlives
deployments (and test homes), like LXC's own template cache.

A snapshot (`benchbed image save`) is an image of the same store made from a deployment's
container: the layers that container sat on, under a copy of its own layer. Its marker says
`"kind": "snapshot"`, the base image below it and where it came from (deployment, provider,
the engine config that made it, masked).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from benchbed.errors import BenchbedError, InputError, NotFoundError
from benchbed.server import Server, run_script

DEFAULT_RELEASE = "bookworm"
RELEASES = ("bullseye", "bookworm", "trixie")
BUILD_TIMEOUT = 1200
# copying a container's own layer: a Keystone and Glance install is about 600 MB
SAVE_TIMEOUT = 900

SCRIPT = "lxc/image.sh"
MIRROR_URI = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%+/-]*)?")


def image_name(release: str) -> str:
    return f"benchbed-base-{release}"


def check_name(name: str) -> None:
    """Image names are LXC container names: they become a directory of LXC's store."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name):
        raise InputError(f"'{name}' is not a valid image name (letters, digits, '.', '_', '-')")


def check_release(release: str) -> None:
    if release not in RELEASES:
        raise InputError(f"unknown Debian release '{release}' (known: {', '.join(RELEASES)})")


def host_mirrors(host: Server) -> tuple[str, str]:
    """The Debian and security mirror URIs that the host's own apt sources name."""
    listed = host.ssh.run("cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list "
                          "2>/dev/null || true", timeout=30)
    return parse_mirrors(listed.stdout, host.host)


def parse_mirrors(text: str, where: str) -> tuple[str, str]:
    """Pick the main and security mirror from deb822 stanzas or one-line `deb` entries."""
    main = security = ""
    entries: list[tuple[str, list[str]]] = []
    for stanza in text.split("\n\n"):
        fields = dict(line.split(":", 1) for line in stanza.splitlines()
                      if ":" in line and not line.startswith((" ", "#")))
        if "URIs" in fields and "Suites" in fields:
            entries.append((fields["URIs"].split()[0], fields["Suites"].split()))
    for line in text.splitlines():
        words = [word for word in line.split() if not word.startswith("[")]
        if len(words) >= 3 and words[0] == "deb":
            entries.append((words[1], [words[2]]))
    for uri, suites in entries:
        if any(suite.endswith(("-security", "/updates")) for suite in suites):
            security = security or uri
        else:
            main = main or uri
    if not main:
        raise BenchbedError(f"{where}: no Debian mirror in /etc/apt/sources.list(.d)")
    for uri in (main, security):
        # a fact of the host, written into the image's sources.list and its JSON marker
        if uri and not MIRROR_URI.fullmatch(uri):
            raise BenchbedError(f"{where}: apt source {uri[:80]!r} is not a plain http(s) URI")
    return main, security or main


class LxcImageStore:
    """`benchbed image ... --provider lxc`: base images on a host (this machine by default)."""

    def __init__(self, host: Server | None = None) -> None:
        self.host = host or Server(host="localhost")

    def build(self, name: str | None, release: str, rebuild: bool) -> dict[str, Any]:
        check_release(release)
        name = name or image_name(release)
        check_name(name)
        mirror, security = host_mirrors(self.host)
        args = [name, release, mirror, security, "1" if rebuild else "0"]
        result = self._run(["build", *args], timeout=BUILD_TIMEOUT)
        return json.loads(result.strip().splitlines()[-1])

    def ensure(self, name: str, release: str) -> None:
        """Build the image if this host does not have it yet (the usual case costs one probe)."""
        if not self.exists(name):
            self.build(name, release, rebuild=False)

    def list(self) -> list[dict[str, Any]]:
        images = []
        for line in self._run(["list"]).splitlines():
            row = json.loads(line)
            images.append({**row.pop("image"), **row})
        return images

    def exists(self, name: str) -> bool:
        check_name(name)
        return run_script(self.host.ssh, SCRIPT, ["exists", name], timeout=30,
                          check=False).exit_code == 0

    def delete(self, name: str) -> None:
        check_name(name)
        self._run(["delete", name])

    def describe(self, name: str) -> dict[str, Any] | None:
        """The marker of a complete image (base or snapshot), or None if there is none."""
        check_name(name)
        result = run_script(self.host.ssh, SCRIPT, ["describe", name], timeout=30, check=False)
        if result.exit_code == 4:
            return None
        if result.exit_code != 0:
            raise BenchbedError(f"{self.host.host}: {result.stderr.strip() or 'failed'}")
        return json.loads(result.stdout)

    def save(self, name: str, container: str, marker: dict[str, Any]) -> dict[str, Any]:
        """Make snapshot `name` of a stopped or running overlay container; returns its marker.

        The script marks the image half-made before it copies anything and `commit` writes
        the marker last, so a save that was killed leaves what `discard` removes.
        """
        check_name(name)
        base = self._run(["save", name, container], timeout=SAVE_TIMEOUT).strip().splitlines()
        complete = {"name": name, "kind": "snapshot", "base": base[-1],
                    "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **marker}
        self._run(["commit", name, json.dumps(complete, sort_keys=True)])
        return complete

    def discard(self, name: str) -> None:
        """Remove a half-made snapshot (a save that failed or was killed); keep a complete one."""
        check_name(name)
        self._run(["discard", name])

    def _run(self, args: Sequence[str], timeout: float = 120) -> str:
        result = run_script(self.host.ssh, SCRIPT, args, timeout=timeout, check=False)
        if result.exit_code == 0:
            return result.stdout
        message = (result.stderr.strip() or result.stdout.strip()).splitlines()
        text = f"{self.host.host}: {message[-1] if message else 'failed'}"
        if result.exit_code == 4:
            raise NotFoundError(text)
        if result.exit_code == 3:
            raise InputError(text)
        raise BenchbedError(f"{text} (exit {result.exit_code})")
