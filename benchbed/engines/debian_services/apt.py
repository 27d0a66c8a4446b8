"""Debian packages on a server: check apt, remember what was there, install, and purge again.

Before the first install the server's package list, users, groups and the service
directories that already exist are written to /var/lib/benchbed-debian on the server, so a
re-run (even by another deployment) keeps the original baseline and cleanup can remove
exactly what was added, dependencies included, and nothing that was there before.
"""

from urllib.parse import urlsplit

from benchbed.errors import BenchbedError
from benchbed.server import Server, run_script

RELEASE = "bookworm"
SCRIPT = "debian/apt.sh"


def check(server: Server, apt_proxy: str | None) -> str | None:
    """Fail clearly unless the server is Debian 12 with apt, and its apt proxy answers.

    Returns the proxy apt will use (the configured one, or the one already set up on
    the server, e.g. by LxcProvider), or None.
    """
    found = run_script(server.ssh, SCRIPT, ["check"], check=False, timeout=60).stdout
    for tool in ("apt-get", "dpkg-query", "debconf-set-selections"):
        if f"/{tool}\n" not in found:
            raise BenchbedError(f"{tool} not found: DebianEngine needs a Debian {RELEASE} server")
    release = found.rsplit("release=", 1)[-1].strip()
    if release != RELEASE:
        raise BenchbedError(f"Debian '{release or 'unknown'}' found: the packages used are "
                            f"those of Debian 12 ({RELEASE})")
    proxy = apt_proxy or run_script(server.ssh, SCRIPT, ["proxy"], timeout=60).stdout.strip() \
        or None
    if proxy:
        try:
            parts = urlsplit(proxy)
            host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise BenchbedError(f"apt proxy {proxy!r} is not a URL") from None
        if not host:
            raise BenchbedError(f"apt proxy {proxy!r} names no host")
        probe = run_script(server.ssh, SCRIPT, ["probe", host, str(port)], check=False,
                           timeout=30)
        if probe.exit_code != 0:
            raise BenchbedError(f"apt proxy {proxy} does not answer from the server "
                                f"(no TCP connection to {host}:{port} within 5 s)")
    return proxy


def record_baseline(server: Server, paths: list[str]) -> None:
    run_script(server.ssh, SCRIPT, ["baseline", *paths], timeout=120)


def set_proxy(server: Server, proxy: str) -> None:
    run_script(server.ssh, SCRIPT, ["set-proxy", proxy], timeout=60)


def update(server: Server) -> None:
    run_script(server.ssh, SCRIPT, ["update"], timeout=1200)


def preseed(server: Server, answers: list[str]) -> None:
    if answers:
        server.ssh.run("debconf-set-selections", stdin="\n".join(answers) + "\n", timeout=60)


def download(server: Server, packages: list[str]) -> None:
    """Fetch the packages first: the network part of the install, apart from the CPU part."""
    run_script(server.ssh, SCRIPT, ["download", *packages], timeout=1800)


def missing(server: Server, packages: list[str]) -> list[str]:
    """The packages not yet installed: none on a re-run or a server started from a snapshot."""
    return run_script(server.ssh, SCRIPT, ["missing", *packages], timeout=60).stdout.split()


def install(server: Server, packages: list[str]) -> None:
    run_script(server.ssh, SCRIPT, ["install", *packages], timeout=1800)


def purge(server: Server, services: list[str]) -> None:
    """Remove every package, user, group and directory added since the baseline."""
    run_script(server.ssh, SCRIPT, ["purge", *services], timeout=1800)
