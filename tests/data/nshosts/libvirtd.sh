#!/bin/sh
# A libvirtd of a namespace host's own (tests/nshosts), run inside its mount namespace:
# libvirt's configuration, state, logs and cache, and benchbed's pool directory, are the
# host's private directories under $1, so that its pool, domains and networks are not this
# machine's. qemu logs to files (no virtlogd of its own); no network is autostarted.
set -eu
directory=$1
for part in etc lib log cache benchbed; do
    mkdir -p "$directory/libvirt-$part"
done
printf 'stdio_handler = "file"\n' > "$directory/libvirt-etc/qemu.conf"
: > "$directory/libvirt-etc/libvirtd.conf"
mount --bind "$directory/libvirt-etc" /etc/libvirt
mount --bind "$directory/libvirt-lib" /var/lib/libvirt
mount --bind "$directory/libvirt-log" /var/log/libvirt
mount --bind "$directory/libvirt-cache" /var/cache/libvirt
mkdir -p /var/lib/benchbed
mount --bind "$directory/libvirt-benchbed" /var/lib/benchbed
exec libvirtd --daemon --pid-file "$directory/libvirtd.pid"
