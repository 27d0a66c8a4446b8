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
from typing import TYPE_CHECKING, Any

from benchbed.errors import BenchbedError, InputError, NotFoundError, UnreachableError
from benchbed.parallel import run_parallel
from benchbed.server import Server, pipe, run_script, script_command

if TYPE_CHECKING:
    from benchbed.deployment import Deployment

DEFAULT_RELEASE = "bookworm"
RELEASES = ("bullseye", "bookworm", "trixie")
BUILD_TIMEOUT = 1200
# copying a container's own layer: a Keystone and Glance install is about 600 MB
SAVE_TIMEOUT = 900
# the longest silence of an image stream (a host still reading a layer off its disk)
STREAM_TIMEOUT = 600

SCRIPT = "lxc/image.sh"
MIRROR_URI = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%+/-]*)?")


def image_name(release: str) -> str:
    return f"benchbed-base-{release}"


def resolve_image(image: str | None, default_release: str) -> tuple[str, str | None]:
    """An engine's `image` as (image name, release): a release (or nothing, the default
    one) means that release's base image, built where missing; any other name is an image
    that must exist somewhere (a snapshot, say), release None."""
    if image is None or image in RELEASES:
        release = image or default_release
        return image_name(release), release
    return image, None


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

    def layers(self, name: str) -> tuple[str, ...]:
        """The images `name` sits on, bottom first, then `name` itself."""
        check_name(name)
        return tuple(self._run(["layers", name]).split())

    def send(self, name: str, target: LxcImageStore) -> None:
        """Stream image `name` (one layer: its own files) to the target host's store, which
        keeps it only once all of it arrived."""
        check_name(name)
        source_path = self._run(["path"]).strip()
        try:
            pipe(self.host.ssh, script_command(SCRIPT, ["pack", name]), target.host.ssh,
                 script_command(SCRIPT, ["receive", name, source_path]),
                 timeout=STREAM_TIMEOUT)
        except BenchbedError as error:
            raise BenchbedError(f"streaming LXC image {name} from {self.host.host} to "
                                f"{target.host.host}: {error}") from None

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


def source_of(name: str, release: str | None, hosts: Sequence[Server],
              deployment: Deployment) -> LxcImageStore:
    """The store of a host that has image `name`, to stream it to the others from (a host
    reading it off its disk is minutes faster than a debootstrap through a chain of apt
    proxies, and every host's clones start from the same files): the first host that has
    it, or, a base image that none has, the first that answers, once it is built there.
    Hosts that do not answer are passed over: their own part fails as a lost host's does."""
    stores = [LxcImageStore(host) for host in hosts]

    def probe(store: LxcImageStore) -> bool | UnreachableError:
        try:
            return store.exists(name)
        except UnreachableError as error:
            return error

    found = run_parallel("finding LXC images", stores, probe,
                         describe=lambda store: store.host.host)
    answering = [(store, has) for store, has in zip(stores, found, strict=True)
                 if not isinstance(has, UnreachableError)]
    if not answering:
        raise next(has for has in found if isinstance(has, UnreachableError))
    having = [store for store, has in answering if has]
    if having:
        return having[0]
    if release is None:
        raise InputError(f"no LXC image named '{name}' on any of the hosts "
                         f"{', '.join(host.host for host in hosts)} (see: benchbed image "
                         f"list --provider lxc)")
    source = answering[0][0]
    with deployment.step("build LXC image", f"{name} on {source.host.host}"):
        source.build(name, release, rebuild=False)
    return source


def copy_image(name: str, source: LxcImageStore, target: Server,
               deployment: Deployment) -> None:
    """Image `name`, and the layers it sits on, on `target`: streamed from `source` where
    missing. One probe when the image is there: an image is never there without its layers
    (a layer is received before what sits on it, and not deleted while something does)."""
    if target.host == source.host.host and target.port == source.host.port:
        return
    store = LxcImageStore(target)
    if store.exists(name):
        return
    for layer in source.layers(name):
        if not store.exists(layer):
            with deployment.step("stream LXC image",
                                 f"{layer}: {source.host.host} -> {target.host}"):
                source.send(layer, store)
