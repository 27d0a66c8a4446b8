#!/bin/sh
# Clone and start one container; prints its address:
#   sh -s -- NAME IMAGE BRIDGE PROXY CPUS MEMORY_MB PUBLIC_KEY STATE FIRST LAST PREFIX [LAYER_ON
#             [SUPERNET GATEWAY [DEVICE]]]
# LAYER_ON, when not empty, is a stopped overlay container whose own layers go under the
# clone's (overlayfs stacks them): a clone of a prepared container without copying its
# files, which `lxc-copy -s` of an overlay clone would do. SUPERNET, when not empty, is the
# deployment's network across several hosts: the container gets one route to it, through
# GATEWAY (its bridge), set by a start-host hook in its network namespace at every start;
# with the MTU of DEVICE when the other hosts are behind one (VXLAN: 50 bytes less than the
# underlay's), so that TCP between hosts sizes its segments to fit.
# The address is fixed before boot (no DHCP round trip, no dhclient at boot): the next one
# in FIRST..LAST (integers, round robin from the last one given) that no container config,
# reservation under STATE/addresses or dnsmasq lease holds, reserved under a lock;
# delete-container.sh drops the reservation. The host's ARP entry for it is flushed: a
# reused address still pointing at the previous container's MAC made SSH wait 30-45 s.
set -eu
name=$1 image=$2 bridge=$3 proxy=$4 cpus=$5 memory=$6 pubkey=$7 state=$8 first=$9
last=${10} prefix=${11} layer_on=${12:-} supernet=${13:-} gateway=${14:-} device=${15:-}
lxcpath=$(lxc-config lxc.lxcpath)
if [ -n "$layer_on" ]; then
    layers=$(sed -n 's/^lxc.rootfs.path *= *overlay:\(.*\)$/\1/p' "$lxcpath/$layer_on/config")
    [ -n "$layers" ] || { echo "$layer_on: not an overlay container" >&2; exit 1; }
    lxc-info -n "$layer_on" -s | grep -q STOPPED || { echo "$layer_on: not stopped" >&2; exit 1; }
fi
case $supernet$gateway in *[!0-9./]*) echo "not an IPv4 network: $supernet" >&2; exit 2 ;; esac
case $device in *[!a-z0-9]*) echo "not a device name: $device" >&2; exit 2 ;; esac
mkdir -p /run/lock "$state/addresses"
exec 9>>"/run/lock/benchbed-lxc-$name.lock"
flock 9
exec 8>>"$state/addresses.lock"
flock 8
previous=$(cat "$state/addresses.last" 2>/dev/null || echo "$last")
chosen=$({ ls "$state/addresses"
          sed -n 's/^lxc.net.0.ipv4.address *= *\([0-9.]*\).*/\1/p' "$lxcpath"/*/config
          cut -d' ' -f3 "$state/dnsmasq.leases" 2>/dev/null || true
        } | awk -v first="$first" -v last="$last" -v previous="$previous" '
    { used[$0] = 1 }
    END {
        for (i = 1; i <= last - first + 1; i++) {
            n = first + (previous - first + i) % (last - first + 1)
            a = sprintf("%d.%d.%d.%d", int(n / 16777216) % 256, int(n / 65536) % 256,
                        int(n / 256) % 256, n % 256)
            if (!(a in used)) { print n, a; exit }
        }
    }')
[ -n "$chosen" ] || { echo "$name: no free address left on $bridge" >&2; exit 1; }
address=${chosen#* }
echo "$name" > "$state/addresses/$address"
echo "${chosen%% *}" > "$state/addresses.last"
exec 8>&-
ip neigh flush to "$address" dev "$bridge" 2>/dev/null || true
lxc-copy -s -B overlay -n "$image" -N "$name" >&2 9>&-
config=$lxcpath/$name/config
upper=$(sed -n 's/^lxc.rootfs.path *= *overlay:[^:]*:\(.*\)$/\1/p' "$config")
[ -n "$upper" ] || { echo "$name: not an overlay clone" >&2; exit 1; }
if [ -n "$layer_on" ]; then
    # its upper layer over its lower ones, all under the clone's own upper layer
    lower=${layers%:*} top=${layers##*:}
    sed -i "s|^lxc.rootfs.path *=.*|lxc.rootfs.path = overlay:$top:$lower:$upper|" "$config"
fi
sed -i "s/^lxc.net.0.link *=.*/lxc.net.0.link = $bridge/" "$config"
echo "lxc.net.0.ipv4.address = $address/$prefix" >> "$config"
if [ "$cpus" -gt 0 ]; then
    if [ -d /sys/fs/cgroup/cpu ]; then
        printf 'lxc.cgroup.cpu.cfs_period_us = 100000\nlxc.cgroup.cpu.cfs_quota_us = %s\n' \
            "$((cpus * 100000))" >> "$config"
    else
        echo "lxc.cgroup2.cpu.max = $((cpus * 100000)) 100000" >> "$config"
    fi
fi
if [ "$memory" -gt 0 ]; then
    if [ -d /sys/fs/cgroup/memory ]; then
        echo "lxc.cgroup.memory.limit_in_bytes = ${memory}M" >> "$config"
    else
        echo "lxc.cgroup2.memory.max = ${memory}M" >> "$config"
    fi
fi
if [ -n "$supernet" ]; then
    printf 'lxc.hook.start-host = /bin/sh -c %s\n' "'mtu=\$(cat /sys/class/net/$device/mtu \
2>/dev/null); nsenter --net=/proc/\$LXC_PID/ns/net ip route replace $supernet via $gateway \
\${mtu:+mtu \$mtu}'" >> "$config"
fi
mkdir -p "$upper/etc/ssh" "$upper/root/.ssh" "$upper/etc/apt/apt.conf.d" "$upper/etc/network" \
    "$upper/etc/systemd/system"
tr -d - < /proc/sys/kernel/random/uuid > "$upper/etc/machine-id"
echo "$name" > "$upper/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 %s\n::1 localhost ip6-localhost ip6-loopback\n' \
    "$name" > "$upper/etc/hosts"
printf 'auto lo\niface lo inet loopback\n# eth0: %s/%s, set by LXC before boot\n' \
    "$address" "$prefix" > "$upper/etc/network/interfaces"
# LXC brings up lo and eth0 itself: ifupdown would only delay network.target, and sshd after it
ln -sf /dev/null "$upper/etc/systemd/system/networking.service"
ln -sf /dev/null "$upper/etc/systemd/system/ifupdown-pre.service"
ssh-keygen -q -t ed25519 -N '' -C "root@$name" -f "$upper/etc/ssh/ssh_host_ed25519_key"
chmod 700 "$upper/root/.ssh"
echo "$pubkey" > "$upper/root/.ssh/authorized_keys"
chmod 600 "$upper/root/.ssh/authorized_keys"
echo "Acquire::http::Proxy \"$proxy\";" > "$upper/etc/apt/apt.conf.d/01benchbed-proxy"
# Every container's systemd takes about six inotify instances from root's per-user budget,
# 128 by default: past some 20 containers on a host, systemd of the next one exits at once
# ("Failed to allocate manager object: Too many open files") and its container stops, which
# showed as a create waiting 90 s for SSH. The limits are raised to what LXC hosts need.
for limit in max_user_instances=8192 max_user_watches=1048576; do
    file=/proc/sys/fs/inotify/${limit%=*}
    [ "$(cat "$file")" -ge "${limit#*=}" ] || echo "${limit#*=}" > "$file"
done
lxc-start -n "$name" -d 9>&-
echo "$address"
