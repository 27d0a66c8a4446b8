#!/bin/sh
# Tear down a raw.sh container as its own cleanup would: lxc-destroy releases no DHCP lease,
# and 20 rounds of 9 new MACs used up the bridge's 127-address range (leased for an hour), so
# round 14's clones waited for an address forever. The lease goes back to dnsmasq
# (dhcp_release, dnsmasq-utils) and the host forgets the address's MAC, which the next
# container that gets the address would otherwise wait 30-45 s on (create-container.sh
# flushes it for benchbed's containers too).
# usage: raw-destroy.sh NAME BRIDGE
set -eu
name=$1 bridge=$2
lxcpath=$(lxc-config lxc.lxcpath)
mac=$(sed -n 's/^lxc.net.0.hwaddr *= *//p' "$lxcpath/$name/config")
address=$(lxc-info -n "$name" -iH | grep -E '^[0-9.]+$' | head -n 1 || true)
lxc-destroy -f -n "$name"
if [ -n "$address" ] && [ -n "$mac" ]; then
    dhcp_release "$bridge" "$address" "$mac"
    ip neigh flush to "$address" dev "$bridge" 2>/dev/null || true
fi
