#!/bin/sh
# Keystone's fernet and credential keys of this machine: sh -s -- MARK DIRECTORY...
# Kept when MARK names this machine (its machine-id) and every DIRECTORY has its keys;
# made anew otherwise, as on a server started from a snapshot of another. Each key is what
# `keystone-manage fernet_setup` and `credential_setup` write (32 random bytes, URL-safe
# base64; 0 is the staged key, 1 the primary), without two seconds of their start-up each.
set -eu
mark=$1
shift
machine=$(cat /etc/machine-id)
if [ "$(cat "$mark" 2>/dev/null || true)" = "$machine" ]; then
    complete=1
    for dir in "$@"; do
        { [ -s "$dir/0" ] && [ -s "$dir/1" ]; } || complete=0
    done
    [ "$complete" = 0 ] || exit 0
fi
umask 077
for dir in "$@"; do
    rm -rf "$dir"
    mkdir "$dir"
    for key in 0 1; do
        head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n' > "$dir/$key"
    done
    chown -R keystone:keystone "$dir"
done
echo "$machine" > "$mark"
