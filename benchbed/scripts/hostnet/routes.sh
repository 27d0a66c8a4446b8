#!/bin/sh
# Routes from a host to the other hosts' container networks, shared by reference count:
#   sh -s -- acquire USER NAME MODE BASE VNI PORT ROUTE...   (ROUTE: SLICE,GATEWAY,PEER)
#   sh -s -- release USER NAME BASE
# MODE static: SLICE via PEER (the host that has it, on this host's own network).
# MODE vxlan: a VXLAN device NAME (id VNI, UDP PORT) to every PEER, and SLICE via that
# host's GATEWAY through it, for underlays that drop packets with foreign source addresses.
# acquire turns forwarding on (the value before is kept and put back by the last release);
# every route and device it makes is listed in the state, and the last release removes them.
set -eu
action=$1 user=$2 name=$3
case $action in
    acquire) mode=$4 base=$5 vni=$6 port=$7; shift 7 ;;
    release) base=$4 ;;
    *) echo "routes.sh: unknown action $action" >&2; exit 2 ;;
esac
state=$base/$name
mkdir -p "$base"
exec 9>>"$base/$name.lock"
flock 9

towards() {  # the device and source address this host reaches $1 by: "DEV SRC"
    ip -o -4 route get "$1" | sed -n 's/.* dev \([^ ]*\).* src \([0-9.]*\).*/\1 \2/p'
}

acquire() {
    mkdir -p "$state/users"
    : > "$state/users/$user"
    forward=/proc/sys/net/ipv4/ip_forward
    [ -s "$state/forward" ] || cat "$forward" > "$state/forward"
    echo 1 > "$forward"
    if [ "$mode" = vxlan ] && ! ip link show dev "$name" >/dev/null 2>&1; then
        first=${1##*,}
        found=$(towards "$first")
        [ -n "$found" ] || { echo "no route to $first" >&2; exit 1; }
        echo "$name" > "$state/device"
        ip link add "$name" type vxlan id "$vni" dstport "$port" local "${found#* }" \
            dev "${found%% *}"
        ip link set "$name" up
    fi
    for route in "$@"; do
        slice=${route%%,*} rest=${route#*,}
        gateway=${rest%%,*} peer=${rest#*,}
        if [ "$mode" = vxlan ]; then
            bridge fdb show dev "$name" | grep -q "^00:00:00:00:00:00 dst $peer " \
                || bridge fdb append 00:00:00:00:00:00 dev "$name" dst "$peer"
            ip route replace "$slice" via "$gateway" dev "$name" onlink
        else
            ip route replace "$slice" via "$peer"
        fi
        grep -qxF "$slice" "$state/routes" 2>/dev/null || echo "$slice" >> "$state/routes"
    done
}

release() {
    rm -f "$state/users/$user"
    if [ -n "$(ls -A "$state/users" 2>/dev/null)" ]; then return 0; fi
    if [ -f "$state/routes" ]; then
        while read -r slice; do ip route del "$slice" 2>/dev/null || true; done < "$state/routes"
    fi
    if [ -f "$state/device" ] && ip link show dev "$name" >/dev/null 2>&1; then
        ip link delete "$name"
    fi
    if [ -s "$state/forward" ]; then cat "$state/forward" > /proc/sys/net/ipv4/ip_forward; fi
    rm -rf "$state"
}

"$action" "$@"
