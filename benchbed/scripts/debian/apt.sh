#!/bin/sh
# DebianEngine's package work on a server: sh -s -- ACTION ARGS...
#   check                 tools present? prints their paths and release=CODENAME
#   proxy                 the apt proxy already configured on the server, if any
#   probe HOST PORT       exit 0 if a TCP connection to HOST:PORT opens within 5 s
#   set-proxy URL         make apt use the proxy URL
#   baseline PATH...      record packages, users, groups and which PATHs exist (once)
#   update                apt-get update
#   download PACKAGE...   fetch the packages without installing them
#   install PACKAGE...    install them, their services kept stopped
#   missing PACKAGE...    print those of the PACKAGEs that are not (fully) installed
#   purge SERVICE...      stop SERVICEs, remove all that was added since the baseline
# Values arrive as arguments only; nothing here is built from them.
set -eu
action=$1
shift
state=/var/lib/benchbed-debian
proxy_file=/etc/apt/apt.conf.d/00benchbed-proxy
policy=/usr/sbin/policy-rc.d
export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true

# An apt run of a create that was killed goes on on the server (as does one of the
# server's own timers): wait for its lock instead of failing on it.
# --force-unsafe-io: dpkg skips its fsync and sync_file_range for every unpacked file,
# which is most of the kernel time of an install. A half-written package after a power
# cut is what it protects against; on a benchmark target the packages can be installed
# again, and cleanup purges them anyway.
apt_get() {
    apt-get -y -q -o DPkg::Lock::Timeout=900 -o Dpkg::Options::=--force-confdef \
        -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-unsafe-io "$@"
}

installed() {
    dpkg-query -W -f='${db:Status-Status} ${binary:Package}\n' \
        | awk '$1 != "not-installed" {print $2}' | sort -u
}

check() {
    for tool in apt-get dpkg-query debconf-set-selections; do command -v "$tool" || true; done
    # shellcheck disable=SC1091  # the server's own file
    . /etc/os-release 2>/dev/null || true
    echo "release=${VERSION_CODENAME:-}"
}

proxy() {
    P=
    eval "$(apt-config shell P Acquire::http::Proxy)"
    echo "$P"
}

probe() {
    # shellcheck disable=SC2016  # bash expands them, from its own arguments
    timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' probe "$1" "$2"
}

set_proxy() {
    printf 'Acquire::http::Proxy "%s";\n' "$1" > "$proxy_file"
}

baseline() {
    [ -f "$state/complete" ] && return 0
    mkdir -p "$state"
    installed > "$state/packages.before"
    getent passwd | cut -d: -f1 | sort -u > "$state/users.before"
    getent group | cut -d: -f1 | sort -u > "$state/groups.before"
    : > "$state/paths.created"
    for p in "$proxy_file" "$@"; do [ -e "$p" ] || echo "$p" >> "$state/paths.created"; done
    touch "$state/complete"
}

update() {
    apt-get -q -o DPkg::Lock::Timeout=900 update
}

download() {
    apt_get install --no-install-recommends --download-only "$@"
}

# Services stay stopped while their packages are configured: benchbed configures them
# first (database, workers) and starts them itself, instead of starting each package's
# defaults (8 x 32 uwsgi workers) only to restart it.
install() {
    ours=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# benchbed-debian\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        ours=1
    fi
    trap '[ $ours = 1 ] && rm -f "$policy"' EXIT
    apt_get install --no-install-recommends "$@"
}

missing() {
    for package in "$@"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
        [ "$status" = installed ] || echo "$package"
    done
}

purge() {
    [ -d "$state" ] || return 0
    for s in "$@"; do service "$s" stop >/dev/null 2>&1 || true; done
    if [ -f "$state/complete" ]; then
        installed > "$state/packages.after"
        added=$(comm -13 "$state/packages.before" "$state/packages.after")
        if [ -n "$added" ]; then
            echo 'mariadb-server mariadb-server/postrm_remove_databases boolean true' \
                | debconf-set-selections 2>/dev/null || true
            # sudo comes in as a dependency; its prerm refuses removal unless told it is wanted.
            # shellcheck disable=SC2086  # one package name per word
            SUDO_FORCE_REMOVE=yes apt_get purge $added
            left=$(installed | comm -12 - "$state/packages.after" \
                | comm -13 "$state/packages.before" -)
            # shellcheck disable=SC2086  # one package name per word
            [ -z "$left" ] || dpkg --purge $left
        fi
        for u in $(getent passwd | cut -d: -f1 | sort -u | comm -13 "$state/users.before" -); do
            userdel "$u" 2>/dev/null || userdel -f "$u"
        done
        for g in $(getent group | cut -d: -f1 | sort -u | comm -13 "$state/groups.before" -); do
            groupdel "$g"
        done
        while read -r p; do [ -n "$p" ] && rm -rf "$p"; done < "$state/paths.created"
    fi
    rm -f "$proxy_file"
    if grep -qs benchbed-debian "$policy"; then rm -f "$policy"; fi
    rm -rf "$state"
}

case $action in
    check|proxy|probe|baseline|update|download|install|missing|purge) "$action" "$@" ;;
    set-proxy) set_proxy "$@" ;;
    *) echo "apt.sh: unknown action $action" >&2; exit 2 ;;
esac
