"""LXC base images: one Debian container per host and release, built once and cloned from.

A base image is an ordinary (never started) LXC container made by the `debian` template, with
what every clone must not share taken out (SSH host keys, machine-id, DHCP leases) and a
`benchbed-image.json` marker written last, so a build that was killed is recognised and rebuilt.
It lives in LXC's own container store, not under BENCHBED_HOME: it is a cache that outlives
deployments (and test homes), like LXC's own template cache.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from benchbed.errors import BenchbedError, InputError, NotFoundError
from benchbed.server import Server, run_script

DEFAULT_RELEASE = "bookworm"
RELEASES = ("bullseye", "bookworm", "trixie")
MARKER = "benchbed-image.json"
BUILD_TIMEOUT = 1200

# Units a benchmark server does not need at boot: fewer units, faster and cheaper starts.
MASKED_UNITS = (
    "console-getty.service", "container-getty@.service", "getty@.service",
    "e2scrub_reap.service", "systemd-pstore.service", "apt-daily.timer",
    "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer", "fstrim.timer",
)
# Generators with nothing to find in a container (the sysv and fstab ones stay: packages and
# users may rely on them); each one skipped saves CPU on every boot.
MASKED_GENERATORS = tuple(f"systemd-{name}-generator" for name in (
    "cryptsetup", "debug", "getty", "gpt-auto", "hibernate-resume", "integritysetup",
    "rc-local", "run", "system-update", "veritysetup"))

COMMON = f"""
marker={MARKER}
masked="{' '.join(MASKED_UNITS)}"
generators="{' '.join(MASKED_GENERATORS)}"
""" + r"""
set -eu
lxcpath=$(lxc-config lxc.lxcpath)
clones() {  # the containers whose overlay rootfs sits on image $1
    grep -ls "^lxc.rootfs.path *= *overlay:$lxcpath/$1/rootfs:" "$lxcpath"/*/config || true
}
"""

# sh -s -- NAME RELEASE MIRROR SECURITY_MIRROR REBUILD
BUILD = COMMON + r"""
name=$1 release=$2 mirror=$3 security=$4 rebuild=$5
dir=$lxcpath/$name
building=$lxcpath/.benchbed-building-$name
mkdir -p /run/lock
exec 9>>"/run/lock/benchbed-image-$name.lock"
flock 9
if [ -f "$dir/$marker" ] && [ "$rebuild" = 0 ]; then cat "$dir/$marker"; exit 0; fi
if [ -e "$dir" ]; then
    if [ ! -f "$dir/$marker" ] && [ ! -e "$building" ]; then
        echo "container $name exists and is not a benchbed image" >&2; exit 3
    fi
    if [ -n "$(clones "$name")" ]; then
        echo "image $name has clones; destroy the deployments using it first" >&2; exit 3
    fi
    lxc-destroy -f -n "$name" >/dev/null 2>&1 || true
    rm -rf "$dir"
fi
: > "$building"
log=$lxcpath/.benchbed-build-$name.log
if ! MIRROR=$mirror SECURITY_MIRROR=$security lxc-create -n "$name" -t debian -- -r "$release" \
        >"$log" 2>&1 9>&-; then
    tail -n 5 "$log" >&2; exit 1
fi
root=$dir/rootfs
rm -f "$root"/etc/ssh/ssh_host_* "$root/var/lib/dbus/machine-id"
: > "$root/etc/machine-id"
rm -rf "$root"/var/lib/dhcp/*
echo "HostKey /etc/ssh/ssh_host_ed25519_key" > "$root/etc/ssh/sshd_config.d/benchbed.conf"
cat > "$root/etc/apt/sources.list" <<EOF
deb $mirror $release main
deb $mirror $release-updates main
deb $security $release-security main
EOF
echo "# benchbed: no DNS here; apt reaches its mirrors through the proxy" > "$root/etc/resolv.conf"
for unit in $masked; do ln -sf /dev/null "$root/etc/systemd/system/$unit"; done
mkdir -p "$root/etc/systemd/system-generators"
for generator in $generators; do
    ln -sf /dev/null "$root/etc/systemd/system-generators/$generator"
done
sed -i 's/^lxc.tty.max *=.*/lxc.tty.max = 0/' "$dir/config"
printf '{"name": "%s", "release": "%s", "created_at": "%s", "mirror": "%s"}\n' \
    "$name" "$release" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$mirror" > "$dir/$marker"
rm -f "$building" "$log"
cat "$dir/$marker"
"""

LIST = COMMON + r"""
for found in "$lxcpath"/*/$marker; do
    [ -f "$found" ] || continue
    dir=${found%/*}
    name=${dir##*/}
    size=$(du -sh "$dir/rootfs" 2>/dev/null | cut -f1)
    count=$(clones "$name" | wc -l)
    printf '{"image": %s, "size": "%s", "clones": %s, "location": "%s"}\n' \
        "$(cat "$found")" "$size" "$count" "$dir"
done
"""

# sh -s -- NAME
DELETE = COMMON + r"""
name=$1
dir=$lxcpath/$name
exec 9>>"/run/lock/benchbed-image-$name.lock"
flock 9
if [ ! -f "$dir/$marker" ] && [ ! -e "$lxcpath/.benchbed-building-$name" ]; then
    echo "no image named $name" >&2; exit 4
fi
if [ -n "$(clones "$name")" ]; then
    echo "image $name is in use by $(clones "$name" | wc -l) container(s)" >&2; exit 3
fi
rm -f "$dir/lxc_snapshots"
lxc-destroy -f -n "$name" >/dev/null 2>&1 || true
rm -rf "$dir" "$lxcpath/.benchbed-building-$name"
"""


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
        result = self._run(BUILD, args, timeout=BUILD_TIMEOUT)
        return json.loads(result.strip().splitlines()[-1])

    def ensure(self, name: str, release: str) -> None:
        """Build the image if this host does not have it yet (the usual case costs one probe)."""
        if not self.exists(name):
            self.build(name, release, rebuild=False)

    def list(self) -> list[dict[str, Any]]:
        images = []
        for line in self._run(LIST, []).splitlines():
            row = json.loads(line)
            images.append({**row.pop("image"), **row})
        return images

    def exists(self, name: str) -> bool:
        check_name(name)
        found = self.host.ssh.run(f'test -f "$(lxc-config lxc.lxcpath)"/{shlex.quote(name)}/'
                                  f'{MARKER}', timeout=30, check=False)
        return found.exit_code == 0

    def delete(self, name: str) -> None:
        check_name(name)
        self._run(DELETE, [name])

    def _run(self, script: str, args: list[str], timeout: float = 120) -> str:
        result = run_script(self.host.ssh, script, args, timeout=timeout, check=False)
        if result.exit_code == 0:
            return result.stdout
        message = (result.stderr.strip() or result.stdout.strip()).splitlines()
        text = f"{self.host.host}: {message[-1] if message else 'failed'}"
        if result.exit_code == 4:
            raise NotFoundError(text)
        if result.exit_code == 3:
            raise InputError(text)
        raise BenchbedError(f"{text} (exit {result.exit_code})")
