#!/bin/sh
# The yardstick: one container to SSH-ready with raw LXC commands, doing what every benchbed
# clone gets (own machine-id, own host key, the key in authorized_keys) on an existing bridge.
# usage: raw.sh NAME IMAGE BRIDGE PRIVATE_KEY
set -eu
name=$1 image=$2 bridge=$3 key=$4
lxcpath=$(lxc-config lxc.lxcpath)
lxc-copy -s -B overlay -n "$image" -N "$name"
config=$lxcpath/$name/config
upper=$lxcpath/$name/overlay/delta
sed -i "s/^lxc.net.0.link *=.*/lxc.net.0.link = $bridge/" "$config"
mkdir -p "$upper/etc/ssh" "$upper/root/.ssh"
tr -d - < /proc/sys/kernel/random/uuid > "$upper/etc/machine-id"
ssh-keygen -q -t ed25519 -N '' -f "$upper/etc/ssh/ssh_host_ed25519_key"
cp "$key.pub" "$upper/root/.ssh/authorized_keys"
lxc-start -n "$name" -d
until address=$(lxc-info -n "$name" -iH | grep -E '^[0-9.]+$'); do sleep 0.05; done
until ssh -q -i "$key" -o BatchMode=yes -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o ConnectTimeout=1 "root@$address" true; do
    sleep 0.05
done
