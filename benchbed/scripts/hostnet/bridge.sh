#!/bin/sh
# A host network shared by reference count, under a lock:
#   sh -s -- ACTION USER BRIDGE GATEWAY PREFIX FIRST LAST BASE CACHE LEASE_TIME PORT [UPSTREAM]
# ACTION acquire: take USER's reference, making the bridge, dnsmasq (DHCP FIRST..LAST) and
# apt-cacher-ng (GATEWAY:PORT, fetching through the proxy UPSTREAM if given) if they are
# missing; release: drop it, and the last one stops both daemons by the pid they wrote and
# removes the bridge. State lives under BASE, the proxy's cache under CACHE.
# DlMaxRetries: a proxy chained to another one fetches a batch of requests over one
# connection; when that upstream closed it mid-batch, two retries (acng's default) failed
# every package left in the batch at once ("Connection closed, check DlMaxRetries").
set -eu
action=$1 user=$2 bridge=$3 gateway=$4 prefix=$5 first=$6 last=$7
base=$8 cache=$9 lease_time=${10} port=${11} upstream=${12:-}
state=$base/$bridge
mkdir -p "$base"
exec 9>>"$base/$bridge.lock"
flock 9

ours() {  # is the process in pid file $1 ours, i.e. does its command line hold argument $2?
    [ -s "$1" ] || return 1
    read -r pid < "$1"
    [ -r "/proc/$pid/cmdline" ] && grep -qzxF -- "$2" "/proc/$pid/cmdline"
}

running() {  # alive and not a zombie (PID 1 may be slow to reap)
    [ -r "/proc/$1/status" ] && ! grep -q '^State:.*Z' "/proc/$1/status"
}

stop() {  # stop the process in pid file $1 if it is ours, by that pid only
    if ours "$1" "$2"; then
        pid=$(cat "$1")
        kill "$pid" 2>/dev/null || true
        i=0
        while running "$pid" && [ $i -lt 50 ]; do sleep 0.05; i=$((i + 1)); done
        if ours "$1" "$2"; then kill -9 "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$1"
}

wait_for_file() {
    i=0
    while [ ! -s "$1" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    [ -s "$1" ] || { echo "$2 did not start (no $1)" >&2; exit 1; }
}

acquire() {
    mkdir -p "$state/users"
    : > "$state/users/$user"
    if ! ip -br addr show dev "$bridge" 2>/dev/null | grep -q "UP .* $gateway/$prefix\( \|$\)"; then
        # An address of its own (locally administered, from its name): a bridge without one
        # takes the lowest of its ports' addresses, so a container joining or leaving moved
        # it, and a guest that had the old one cached lost the host until its ARP entry
        # expired: a container's SSH then waited 10 s (1 in 160 in bench/lxc).
        mac=$(printf '%s' "$bridge" | md5sum | cut -c1-10 | sed 's/\(..\)/:\1/g; s/^/02/')
        ip link show dev "$bridge" >/dev/null 2>&1 \
            || ip link add name "$bridge" address "$mac" type bridge
        ip addr replace "$gateway/$prefix" dev "$bridge"
        ip link set "$bridge" up
    fi
    if ! ours "$state/dnsmasq.pid" "--pid-file=$state/dnsmasq.pid"; then
        rm -f "$state/dnsmasq.pid"
        dnsmasq --conf-file=/dev/null --port=0 --bind-interfaces --interface="$bridge" \
            --except-interface=lo --listen-address="$gateway" \
            --dhcp-range="$first,$last,$lease_time" --dhcp-authoritative --no-ping \
            --dhcp-option=3 --dhcp-option=6 --dhcp-leasefile="$state/dnsmasq.leases" \
            --pid-file="$state/dnsmasq.pid" </dev/null >"$state/dnsmasq.log" 2>&1 9>&- \
            || { cat "$state/dnsmasq.log" >&2; exit 1; }
        wait_for_file "$state/dnsmasq.pid" dnsmasq
    fi
    conf=$state/acng
    if ! ours "$state/acng-run/pid" "$conf"; then
        mkdir -p "$conf" "$state/acng-run" "$cache/$bridge.log" "$cache/$bridge"
        chown apt-cacher-ng: "$state/acng-run" "$cache/$bridge.log" "$cache/$bridge"
        rm -f "$state/acng-run/pid"
        cat > "$conf/acng.conf" <<EOF
CacheDir: $cache/$bridge
LogDir: $cache/$bridge.log
SupportDir: /usr/lib/apt-cacher-ng
BindAddress: $gateway
Port: $port
PidFile: $state/acng-run/pid
SocketPath: $state/acng-run/socket
ForeGround: 0
ExThreshold: 4
DlMaxRetries: 10
EOF
        if [ -n "$upstream" ]; then printf 'Proxy: %s\n' "$upstream" >> "$conf/acng.conf"; fi
        setpriv --reuid=apt-cacher-ng --regid=apt-cacher-ng --init-groups \
            apt-cacher-ng -c "$conf" </dev/null >"$state/acng-start.log" 2>&1 9>&- \
            || { cat "$state/acng-start.log" >&2; exit 1; }
        wait_for_file "$state/acng-run/pid" apt-cacher-ng
    fi
}

release() {
    rm -f "$state/users/$user"
    if [ -n "$(ls -A "$state/users" 2>/dev/null)" ]; then return 0; fi
    stop "$state/acng-run/pid" "$state/acng"
    stop "$state/dnsmasq.pid" "--pid-file=$state/dnsmasq.pid"
    if ip link show dev "$bridge" >/dev/null 2>&1; then ip link delete "$bridge"; fi
    rm -rf "$state"
}

case $action in
    acquire|release) "$action" ;;
    *) echo "bridge.sh: unknown action $action" >&2; exit 2 ;;
esac
