"""Debian packages on a server: check apt, remember what was there, install, and purge again.

Before the first install the server's package list, users, groups and the service
directories that already exist are written to STATE_DIR on the server itself, so that a
re-run (even by another deployment) keeps the original baseline and cleanup can remove
exactly what was added, dependencies included, and nothing that was there before.
"""

import shlex
from urllib.parse import urlsplit

from benchbed.errors import BenchbedError
from benchbed.server import Server, run_script

STATE_DIR = "/var/lib/benchbed-debian"
PROXY_FILE = "/etc/apt/apt.conf.d/00benchbed-proxy"
POLICY_RC = "/usr/sbin/policy-rc.d"
RELEASE = "bookworm"
APT_ENV = "DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true"
# --force-unsafe-io: dpkg skips its fsync and sync_file_range for every unpacked file,
# which is most of the kernel time of an install (and the noisiest part of it on a busy
# disk). A half-written package after a power cut is what it protects against; on a
# benchmark target the packages can be installed again, and cleanup purges them anyway.
# An apt run of a create that was killed goes on on the server (as does one of the server's
# own timers): wait for its lock instead of failing on it.
LOCK_WAIT = "-o DPkg::Lock::Timeout=900"
APT_GET = (f"{APT_ENV} apt-get -y -q {LOCK_WAIT} -o Dpkg::Options::=--force-confdef "
           "-o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-unsafe-io")
INSTALLED = ("dpkg-query -W -f='${db:Status-Status} ${binary:Package}\\n' "
             "| awk '$1 != \"not-installed\" {print $2}' | sort -u")

BASELINE = f"""\
set -e
S={STATE_DIR}
[ -f $S/complete ] && exit 0
mkdir -p $S
{INSTALLED} > $S/packages.before
getent passwd | cut -d: -f1 | sort -u > $S/users.before
getent group | cut -d: -f1 | sort -u > $S/groups.before
: > $S/paths.created
for p in "$@"; do [ -e "$p" ] || echo "$p" >> $S/paths.created; done
touch $S/complete
"""

# Services stay stopped while their packages are configured: benchbed configures them
# first (database, workers) and starts them itself, instead of starting each package's
# defaults (8 x 32 uwsgi workers) only to restart it.
INSTALL = f"""\
set -e
ours=0
if [ ! -e {POLICY_RC} ]; then
  printf '#!/bin/sh\\n# benchbed-debian\\nexit 101\\n' > {POLICY_RC}; chmod 755 {POLICY_RC}; ours=1
fi
trap '[ $ours = 1 ] && rm -f {POLICY_RC}' EXIT
{APT_GET} install --no-install-recommends "$@"
"""

PURGE = f"""\
set -e
S={STATE_DIR}
[ -d $S ] || exit 0
for s in "$@"; do service "$s" stop >/dev/null 2>&1 || true; done
if [ -f $S/complete ]; then
  {INSTALLED} > $S/packages.after
  added=$(comm -13 $S/packages.before $S/packages.after)
  if [ -n "$added" ]; then
    echo 'mariadb-server mariadb-server/postrm_remove_databases boolean true' \\
      | debconf-set-selections 2>/dev/null || true
    # sudo comes in as a dependency; its prerm refuses removal unless told it is wanted.
    SUDO_FORCE_REMOVE=yes {APT_GET} purge $added
    left=$({INSTALLED} | comm -12 - $S/packages.after | comm -13 $S/packages.before -)
    [ -z "$left" ] || dpkg --purge $left
  fi
  for u in $(getent passwd | cut -d: -f1 | sort -u | comm -13 $S/users.before -); do
    userdel "$u" 2>/dev/null || userdel -f "$u"
  done
  for g in $(getent group | cut -d: -f1 | sort -u | comm -13 $S/groups.before -); do
    groupdel "$g"
  done
  while read -r p; do [ -n "$p" ] && rm -rf "$p"; done < $S/paths.created
fi
rm -f {PROXY_FILE}
grep -qs benchbed-debian {POLICY_RC} && rm -f {POLICY_RC}
rm -rf $S
"""


def check(server: Server, apt_proxy: str | None) -> str | None:
    """Fail clearly unless the server is Debian 12 with apt, and its apt proxy answers.

    Returns the proxy apt will use (the configured one, or the one already set up on
    the server, e.g. by LxcProvider), or None.
    """
    found = server.ssh.run("command -v apt-get dpkg-query debconf-set-selections; "
                           ". /etc/os-release 2>/dev/null; echo \"release=$VERSION_CODENAME\"",
                           check=False, timeout=60).stdout
    for tool in ("apt-get", "dpkg-query", "debconf-set-selections"):
        if f"/{tool}\n" not in found:
            raise BenchbedError(f"{tool} not found: DebianEngine needs a Debian {RELEASE} server")
    release = found.rsplit("release=", 1)[-1].strip()
    if release != RELEASE:
        raise BenchbedError(f"Debian '{release or 'unknown'}' found: the packages used are "
                            f"those of Debian 12 ({RELEASE})")
    proxy = apt_proxy or server.ssh.run(
        "eval \"$(apt-config shell P Acquire::http::Proxy)\"; echo \"$P\"",
        timeout=60).stdout.strip() or None
    if proxy:
        parts = urlsplit(proxy)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        probe = server.ssh.run(f"timeout 5 bash -c 'exec 3<>/dev/tcp/{host}/{port}'",
                               check=False, timeout=30)
        if probe.exit_code != 0:
            raise BenchbedError(f"apt proxy {proxy} does not answer from the server "
                                f"(no TCP connection to {host}:{port} within 5 s)")
    return proxy


def record_baseline(server: Server, paths: list[str]) -> None:
    run_script(server.ssh, BASELINE, paths, timeout=120)


def set_proxy(server: Server, proxy: str) -> None:
    server.ssh.put_file(f'Acquire::http::Proxy "{proxy}";\n', PROXY_FILE)


def update(server: Server) -> None:
    server.ssh.run(f"{APT_ENV} apt-get -q {LOCK_WAIT} update", timeout=1200)


def preseed(server: Server, answers: list[str]) -> None:
    if answers:
        server.ssh.run("debconf-set-selections", stdin="\n".join(answers) + "\n", timeout=60)


def download(server: Server, packages: list[str]) -> None:
    """Fetch the packages first: the network part of the install, apart from the CPU part."""
    server.ssh.run(f"{APT_GET} install --no-install-recommends --download-only "
                   f"{' '.join(shlex.quote(p) for p in packages)}", timeout=1800)


def install(server: Server, packages: list[str]) -> None:
    run_script(server.ssh, INSTALL, packages, timeout=1800)


def purge(server: Server, services: list[str]) -> None:
    """Remove every package, user, group and directory added since the baseline."""
    run_script(server.ssh, PURGE, services, timeout=1800)
