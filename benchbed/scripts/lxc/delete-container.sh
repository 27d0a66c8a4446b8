#!/bin/sh
# Remove one container and its address reservation: sh -s -- NAME STATE.
# Already gone is success; the per-container lock waits for a half-done clone.
set -eu
name=$1 state=$2
lxcpath=$(lxc-config lxc.lxcpath)
mkdir -p /run/lock
exec 9>>"/run/lock/benchbed-lxc-$name.lock"
flock 9
# a container an `image save` killed mid-copy left frozen would not stop
lxc-unfreeze -n "$name" >/dev/null 2>&1 || true
if [ -f "$lxcpath/$name/config" ]; then lxc-destroy -f -n "$name" >&2 9>&-; fi
rm -rf "${lxcpath:?}/$name"
if [ -d "$state/addresses" ]; then
    grep -lxF "$name" "$state/addresses"/* 2>/dev/null | while read -r reserved; do
        rm -f "$reserved"
    done
fi
rm -f "/run/lock/benchbed-lxc-$name.lock"
