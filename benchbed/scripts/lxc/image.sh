#!/bin/sh
# LXC base images in LXC's own container store: sh -s -- ACTION ARGS...
#   build NAME RELEASE MIRROR SECURITY_MIRROR REBUILD   prints the image's marker (JSON)
#   list                                                one JSON line per image
#   exists NAME                                         exit 0 if the image is complete
#   delete NAME                                         exit 4: no such image, 3: in use
# A base image is a never started container made by the `debian` template; its marker is
# written last, so a build that was killed is recognised and rebuilt.
set -eu
action=$1
shift
marker=benchbed-image.json
# Units a benchmark server does not need at boot: fewer units, faster and cheaper starts.
masked="console-getty.service container-getty@.service getty@.service e2scrub_reap.service
systemd-pstore.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer
e2scrub_all.timer fstrim.timer"
# Generators with nothing to find in a container (the sysv and fstab ones stay: packages and
# users may rely on them); each one skipped saves CPU on every boot.
generators="cryptsetup debug getty gpt-auto hibernate-resume integritysetup rc-local run
system-update veritysetup"
lxcpath=$(lxc-config lxc.lxcpath)

clones() {  # the containers whose overlay rootfs sits on image $1
    grep -ls "^lxc.rootfs.path *= *overlay:$lxcpath/$1/rootfs:" "$lxcpath"/*/config || true
}

build() {
    name=$1 release=$2 mirror=$3 security=$4 rebuild=$5
    dir=$lxcpath/$name
    building=$lxcpath/.benchbed-building-$name
    mkdir -p /run/lock
    exec 9>>"/run/lock/benchbed-image-$name.lock"
    flock 9
    if [ -f "$dir/$marker" ] && [ "$rebuild" = 0 ]; then cat "$dir/$marker"; return 0; fi
    if [ -e "$dir" ]; then
        if [ ! -f "$dir/$marker" ] && [ ! -e "$building" ]; then
            echo "container $name exists and is not a benchbed image" >&2; exit 3
        fi
        if [ -n "$(clones "$name")" ]; then
            echo "image $name has clones; destroy the deployments using it first" >&2; exit 3
        fi
        lxc-destroy -f -n "$name" >/dev/null 2>&1 || true
        rm -rf "$dir"
    fi
    : > "$building"
    log=$lxcpath/.benchbed-build-$name.log
    if ! MIRROR=$mirror SECURITY_MIRROR=$security \
            lxc-create -n "$name" -t debian -- -r "$release" >"$log" 2>&1 9>&-; then
        tail -n 5 "$log" >&2; exit 1
    fi
    root=$dir/rootfs
    rm -f "$root"/etc/ssh/ssh_host_* "$root/var/lib/dbus/machine-id"
    : > "$root/etc/machine-id"
    rm -rf "$root"/var/lib/dhcp/*
    echo "HostKey /etc/ssh/ssh_host_ed25519_key" > "$root/etc/ssh/sshd_config.d/benchbed.conf"
    printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
        "$mirror" "$release" "$mirror" "$release" "$security" "$release" \
        > "$root/etc/apt/sources.list"
    echo "# benchbed: no DNS here; apt reaches its mirrors through the proxy" \
        > "$root/etc/resolv.conf"
    for unit in $masked; do ln -sf /dev/null "$root/etc/systemd/system/$unit"; done
    mkdir -p "$root/etc/systemd/system-generators"
    for generator in $generators; do
        ln -sf /dev/null "$root/etc/systemd/system-generators/systemd-$generator-generator"
    done
    sed -i 's/^lxc.tty.max *=.*/lxc.tty.max = 0/' "$dir/config"
    printf '{"name": "%s", "release": "%s", "created_at": "%s", "mirror": "%s"}\n' \
        "$name" "$release" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$mirror" > "$dir/$marker"
    rm -f "$building" "$log"
    cat "$dir/$marker"
}

list() {
    for found in "$lxcpath"/*/"$marker"; do
        [ -f "$found" ] || continue
        dir=${found%/*}
        name=${dir##*/}
        size=$(du -sh "$dir/rootfs" 2>/dev/null | cut -f1)
        count=$(clones "$name" | wc -l)
        printf '{"image": %s, "size": "%s", "clones": %s, "location": "%s"}\n' \
            "$(cat "$found")" "$size" "$count" "$dir"
    done
}

exists() {
    test -f "$lxcpath/$1/$marker"
}

delete() {
    name=$1
    dir=$lxcpath/$name
    exec 9>>"/run/lock/benchbed-image-$name.lock"
    flock 9
    if [ ! -f "$dir/$marker" ] && [ ! -e "$lxcpath/.benchbed-building-$name" ]; then
        echo "no image named $name" >&2; exit 4
    fi
    if [ -n "$(clones "$name")" ]; then
        echo "image $name is in use by $(clones "$name" | wc -l) container(s)" >&2; exit 3
    fi
    rm -f "$dir/lxc_snapshots"
    lxc-destroy -f -n "$name" >/dev/null 2>&1 || true
    rm -rf "$dir" "$lxcpath/.benchbed-building-$name"
}

case $action in
    build|list|exists|delete) "$action" "$@" ;;
    *) echo "image.sh: unknown action $action" >&2; exit 2 ;;
esac
