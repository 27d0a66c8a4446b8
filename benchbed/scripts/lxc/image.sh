#!/bin/sh
# LXC base images in LXC's own container store: sh -s -- ACTION ARGS...
#   build NAME RELEASE MIRROR SECURITY_MIRROR REBUILD   prints the image's marker (JSON)
#   list                                                one JSON line per image
#   exists NAME                                         exit 0 if the image is complete
#   delete NAME                                         exit 4: no such image, 3: in use
#   save NAME CONTAINER     copy a (briefly frozen) overlay container's own layer into
#                           snapshot NAME; prints the base image it sits on
#   commit NAME MARKER      write the snapshot's marker (JSON): it is complete from now on
#   discard NAME            delete NAME if it is a half-made image, keep a complete one
#   describe NAME           print the image's marker; exit 4 if there is no complete one
#   layers NAME             the images NAME sits on, bottom first, then NAME
#   path                    this host's LXC path
#   pack NAME               the image as a tar on stdout, its marker the last member
#   receive NAME FROM_PATH  an image from a pack on stdin (FROM_PATH: the packing host's LXC
#                           path); kept only once its marker, the last member, arrived
# A base image is a never started container made by the `debian` template. A snapshot is a
# never started overlay container: the layers its origin container sat on, under a copy of
# that container's own layer (`delta`); clones stack their own layer over it. Either kind's
# marker is written last, so a build or save that was killed is recognised as half-made.
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

clones() {  # the containers (snapshots included) whose overlay rootfs has image $1 below
    grep -lsE "^lxc.rootfs.path *= *overlay:(.*:)?$lxcpath/$1/(rootfs|delta):" \
        "$lxcpath"/*/config || true
}

lock() {
    mkdir -p /run/lock
    exec 9>>"/run/lock/benchbed-image-$1.lock"
    flock 9
}

build() {
    name=$1 release=$2 mirror=$3 security=$4 rebuild=$5
    dir=$lxcpath/$name
    building=$lxcpath/.benchbed-building-$name
    lock "$name"
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

save() {
    name=$1 container=$2
    dir=$lxcpath/$name
    building=$lxcpath/.benchbed-building-$name
    lock "$name"
    if [ -e "$dir" ] && [ ! -e "$building" ]; then
        echo "an image or container named $name exists already" >&2; exit 3
    fi
    layers=$(sed -n 's/^lxc.rootfs.path *= *overlay:\(.*\)$/\1/p' "$lxcpath/$container/config")
    [ -n "$layers" ] || { echo "$container: not an overlay container" >&2; exit 1; }
    lower=${layers%:*} upper=${layers##*:}
    base=${lower##*:}
    base=${base%/rootfs}
    base=${base##*/}
    : > "$building"
    rm -rf "$dir"
    mkdir -p "$dir"
    # The bulk is copied while the container runs, then what changed meanwhile while it is
    # frozen: it writes nothing during that pass, so the copy is what a power cut would have
    # left, which its services recover from as they boot. Whiteouts, opaque directories
    # (trusted.* attributes) and hard links are kept; apt's downloaded packages are not.
    copy() {
        rsync -aHAX --numeric-ids --delete --exclude='/var/cache/apt/archives/*.deb' \
            "$upper/" "$dir/delta/"
    }
    copy
    lxc-freeze -n "$container"
    trap 'lxc-unfreeze -n "$container"' EXIT
    copy
    lxc-unfreeze -n "$container"
    trap - EXIT
    # what each clone gets of its own (create-container.sh), and the origin's login key
    rm -f "$dir/delta/etc/machine-id" "$dir/delta/etc/hostname" "$dir/delta/etc/hosts" \
        "$dir/delta/etc/network/interfaces" "$dir/delta/root/.ssh/authorized_keys" \
        "$dir/delta"/etc/ssh/ssh_host_* "$dir/delta/etc/apt/apt.conf.d/01benchbed-proxy"
    rm -rf "$dir/delta"/var/lib/dhcp/*
    sed -e "s|^lxc.rootfs.path *=.*|lxc.rootfs.path = overlay:$lower:$dir/delta|" \
        -e "s|^lxc.uts.name *=.*|lxc.uts.name = $name|" "$lxcpath/$base/config" > "$dir/config"
    echo "$base"
}

commit() {
    name=$1
    lock "$name"
    [ -e "$lxcpath/.benchbed-building-$name" ] || { echo "no snapshot $name in the making" >&2; exit 4; }
    printf '%s\n' "$2" > "$lxcpath/$name/$marker"
    rm -f "$lxcpath/.benchbed-building-$name"
}

discard() {
    lock "$1"
    if [ -e "$lxcpath/.benchbed-building-$1" ]; then
        rm -rf "${lxcpath:?}/$1" "$lxcpath/.benchbed-building-$1"
    fi
}

describe() {
    [ -f "$lxcpath/$1/$marker" ] || { echo "no image named $1" >&2; exit 4; }
    cat "$lxcpath/$1/$marker"
}

list() {
    for found in "$lxcpath"/*/"$marker"; do
        [ -f "$found" ] || continue
        dir=${found%/*}
        name=${dir##*/}
        layer=$dir/rootfs
        [ -d "$dir/delta" ] && layer=$dir/delta
        size=$(du -sh "$layer" 2>/dev/null | cut -f1)
        count=$(clones "$name" | wc -l)
        printf '{"image": %s, "size": "%s", "clones": %s, "location": "%s"}\n' \
            "$(cat "$found")" "$size" "$count" "$dir"
    done
    for found in "$lxcpath"/.benchbed-building-*; do
        [ -e "$found" ] || continue
        name=${found##*/.benchbed-building-}
        printf '{"image": {"name": "%s", "state": "half-made"}, "location": "%s"}\n' \
            "$name" "$lxcpath/$name"
    done
}

exists() {
    test -f "$lxcpath/$1/$marker"
}

delete() {
    name=$1
    dir=$lxcpath/$name
    lock "$name"
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

layers() {
    rootfs=$(sed -n 's/^lxc.rootfs.path *= *//p' "$lxcpath/$1/config")
    case $rootfs in
        overlay:*)
            below=${rootfs#overlay:}
            below=${below%:*}
            printf '%s\n' "$below" | tr ':' '\n' | while read -r layer; do
                layer=${layer%/*}
                echo "${layer##*/}"
            done
            ;;
    esac
    echo "$1"
}

path() {
    echo "$lxcpath"
}

pack() {
    name=$1
    [ -f "$lxcpath/$name/$marker" ] || { echo "no image named $name" >&2; exit 4; }
    lock "$name"
    cd "$lxcpath"
    # owners by number, extended attributes (overlayfs whiteouts, file capabilities), ACLs
    { find "$name" ! -path "$name/$marker" -print0; printf '%s\0' "$name/$marker"; } \
        | tar --numeric-owner --xattrs --xattrs-include='*' --acls --no-recursion --null \
            -T - -cf -
}

receive() {
    name=$1 from=$2
    dir=$lxcpath/$name
    incoming=$lxcpath/.benchbed-incoming-$name
    lock "$name"
    if [ -f "$dir/$marker" ]; then cat >/dev/null; return 0; fi
    if [ -e "$dir" ]; then
        if [ ! -e "$lxcpath/.benchbed-building-$name" ]; then
            cat >/dev/null
            echo "container $name exists and is not a benchbed image" >&2; exit 3
        fi
        rm -rf "$dir" "$lxcpath/.benchbed-building-$name"
    fi
    rm -rf "$incoming"
    mkdir -p "$incoming"
    trap 'rm -rf "$incoming" "$incoming.log"' EXIT
    if ! tar --numeric-owner --xattrs --xattrs-include='*' --acls -C "$incoming" -xf - \
            2>"$incoming.log"; then
        echo "the stream of image $name broke off, not kept: $(head -n 1 "$incoming.log")" >&2
        exit 1
    fi
    cat >/dev/null
    if [ ! -f "$incoming/$name/$marker" ]; then
        echo "the stream of image $name ended before its marker: incomplete, not kept" >&2
        exit 1
    fi
    sed -i "s|$from/|$lxcpath/|g" "$incoming/$name/config"
    mv "$incoming/$name" "$dir"
}

case $action in
    build|list|exists|delete|save|commit|discard|describe|layers|path|pack|receive)
        "$action" "$@" ;;
    *) echo "image.sh: unknown action $action" >&2; exit 2 ;;
esac
