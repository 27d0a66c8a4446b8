#!/bin/sh
# DevStack on one server, step by step: sh -s -- ACTION [ARGS]
#   prereqs                  remember what runs, install git and sudo if missing
#   user                     the stack user (home /opt/stack) and its sudoers drop-in
#   pip INDEX_URL [HOST]     /etc/pip.conf pointing at the PyPI mirror (HOST: trusted-host)
#   clone REPO BRANCH        devstack at BRANCH in /opt/stack/devstack, as stack
#   start                    stack.sh as stack, detached, output to $state/stack.out
#   poll OFFSET              "running|lost|EXIT_CODE", then stack.out from byte OFFSET on
#   stop                     end stack.sh's process group (the one start made)
#   datapath TYPE            OVN's integration bridge (ovn-controller makes it) on OVS's
#                            datapath TYPE, as DevStack's own bridges (OVS_DATAPATH_TYPE)
#   chassis                  OVN's chassis under the host name of this server's one fake
#                            nova-compute, which Neutron binds that compute's ports to
#   agent_hosts              the host names this server's Neutron agents report under:
#                            its own, and its OVN chassis's
#   idle UNIT...             stop and disable each UNIT that a package started and that
#                            ran not before stack.sh (apache2 only while it serves no
#                            site of DevStack's): what this server's services never use
#   seal                     the units that would reach this server's peers or hold its
#                            secrets start only on this machine (its machine-id), so that
#                            a snapshot's clone starts them once it is itself (resume.py)
#   computes                 the hosts this server's nova-compute services report as
#   discover LOCK            nova-manage cell_v2 discover_hosts as stack, one at a time
#                            (under flock LOCK) on this API server
#   cleanup                  stop, unstack.sh, clean.sh, then what they leave
# What was there before (user, drop-ins, pip.conf, running services) is kept in $state and
# left as it was.
set -eu
export LC_ALL=C
state=/var/lib/benchbed-devstack
home=/opt/stack
devstack=$home/devstack
sudoers=/etc/sudoers.d/50_stack_sh
ksm=/sys/kernel/mm/ksm
iscsid_drop_in=/etc/systemd/system/iscsid.service.d/50-benchbed-no-container.conf
ovs_drop_in=/etc/systemd/system/ovs-vswitchd.service.d/50-benchbed-no-mlockall.conf
units=/etc/systemd/system
origin_drop_in=50-benchbed-origin.conf
tun_rule=/etc/tmpfiles.d/50-benchbed-tun.conf
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
action=$1
shift
mkdir -p "$state"

running_services() {
    if command -v systemctl >/dev/null; then
        systemctl list-units --type=service --state=running --no-legend --plain \
            | awk '{print $1}' | sort -u
    fi
}

drop_ins() {
    [ -d /etc/sudoers.d ] || return 0
    find /etc/sudoers.d -mindepth 1 -maxdepth 1 -printf '%f\n' | sort
}

as_stack() {  # run "$@" as the stack user, in its home, without a tty or a new session
    env -i PATH=$path HOME=$home USER=stack LOGNAME=stack SHELL=/bin/bash LANG=C.UTF-8 \
        setpriv --reuid=stack --regid=stack --init-groups "$@"
}

prereqs() {
    [ -f "$state/services.before" ] || running_services > "$state/services.before"
    [ -f "$state/sudoers.before" ] || drop_ins > "$state/sudoers.before"
    if [ -e /etc/pip.conf ] && [ ! -e "$state/pip.conf.before" ]; then
        cp -p /etc/pip.conf "$state/pip.conf.before"
    fi
    missing=""
    for package in git sudo; do
        dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q ' installed$' \
            || missing="$missing $package"
    done
    if [ -n "$missing" ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get -q -o DPkg::Lock::Timeout=600 update >/dev/null
        # shellcheck disable=SC2086 # a list of package names
        apt-get -q -y -o DPkg::Lock::Timeout=600 install --no-install-recommends $missing \
            >/dev/null
    fi
    # LXC mounts /sys read-only and DevStack writes $ksm/run whenever it exists: an empty
    # tmpfs over it, in this server's mount namespace only (never the host's KSM).
    if [ -e "$ksm/run" ] && [ ! -w "$ksm/run" ]; then
        mount -t tmpfs -o size=4k,mode=755 benchbed-no-ksm "$ksm"
        : > "$state/ksm.mounted"
    fi
    # OVS's userspace datapath makes each bridge's own port a tap device: a container has no
    # /dev/net/tun unless it is made (LXC's device list allows it); a tmpfiles rule makes it
    # again at every boot, as a snapshot's clone boots. Where mknod is refused, OVS's
    # bridges stay without their ports, as before.
    if [ ! -e /dev/net/tun ] && mkdir -p /dev/net && mknod -m 666 /dev/net/tun c 10 200 \
            2>/dev/null; then
        printf 'c! /dev/net/tun 0666 root root - 10:200\n' > "$tun_rule"
        : > "$state/tun.created"
    fi
    # DevStack's configure_nova restarts iscsid whenever n-cpu is on; iscsid cannot run in
    # a container. The condition makes systemd skip it there (a restart then succeeds) and
    # changes nothing on a VM or a machine.
    if [ ! -e "$iscsid_drop_in" ]; then
        mkdir -p "${iscsid_drop_in%/*}"
        printf '[Unit]\nConditionVirtualization=!container\n' > "$iscsid_drop_in"
        : > "$state/iscsid.drop-in"
        if command -v systemctl >/dev/null; then systemctl daemon-reload; fi
    fi
    # ovs-ctl locks all of ovs-vswitchd into memory (--mlockall), for a datapath that must
    # never page: in a container it pins its whole address space resident, a third of a
    # fake compute's OVN chassis. Not on a VM or a machine, where that choice is OVS's.
    if systemd-detect-virt --quiet --container && [ ! -e "$ovs_drop_in" ]; then
        mkdir -p "${ovs_drop_in%/*}"
        printf '[Service]\nEnvironment=OVS_CTL_OPTS=--no-mlockall\n' > "$ovs_drop_in"
        : > "$state/ovs.drop-in"
        systemctl daemon-reload
    fi
}

user() {
    if ! getent passwd stack >/dev/null; then
        : > "$state/user.created"
        useradd --shell /bin/bash --home-dir "$home" --create-home stack
    fi
    [ -d "$home" ] || install -d -o stack -g stack "$home"
    chmod 755 "$home"
    printf 'stack ALL=(root) NOPASSWD:ALL\n' > "$sudoers.benchbed"
    chmod 440 "$sudoers.benchbed"
    visudo -qcf "$sudoers.benchbed"
    mv -f "$sudoers.benchbed" "$sudoers"
}

pip() {
    {
        echo "[global]"
        echo "index-url = $1"
        echo "timeout = 120"
        [ -z "${2:-}" ] || echo "trusted-host = $2"
    } > /etc/pip.conf
}

clone() {
    repo=$1 branch=$2
    if [ -d "$devstack/.git" ]; then
        as_stack timeout 120 git -C "$devstack" fetch -q --depth 1 -- "$repo" "$branch" \
            || fail_clone $? "$repo" "$branch"
        as_stack git -C "$devstack" checkout -q -f FETCH_HEAD
    else
        rm -rf "$devstack"
        as_stack timeout 120 git clone -q --depth 1 --branch "$branch" -- "$repo" "$devstack" \
            || fail_clone $? "$repo" "$branch"
    fi
}

fail_clone() {
    if [ "$1" = 124 ]; then echo "devstack_repo $2 did not answer within 120 s" >&2; fi
    exit "$1"
}

start() {
    chown stack: "$devstack/local.conf"
    rm -f "$state/stack.rc"
    : > "$state/stack.out"
    cd "$devstack"
    # shellcheck disable=SC2016 # expanded by the inner shell
    env -i PATH=$path HOME=$home USER=stack LOGNAME=stack SHELL=/bin/bash LANG=C.UTF-8 \
        setsid sh -c 'setpriv --reuid=stack --regid=stack --init-groups ./stack.sh
                      echo $? > "$1/stack.rc.new" && mv "$1/stack.rc.new" "$1/stack.rc"' \
        sh "$state" </dev/null >>"$state/stack.out" 2>&1 &
    echo $! > "$state/stack.pid"
    # the group exists only once the child has run setsid: a poll before would see none
    i=0
    while ! alive && [ ! -s "$state/stack.rc" ]; do
        i=$((i + 1))
        [ $i -le 600 ] || { echo "stack.sh did not start" >&2; exit 1; }
        sleep 0.05
    done
}

alive() {  # is the process group that start made still there?
    [ -s "$state/stack.pid" ] && kill -0 "-$(cat "$state/stack.pid")" 2>/dev/null
}

poll() {
    if [ -s "$state/stack.rc" ]; then cat "$state/stack.rc"
    elif alive; then echo running
    else echo lost
    fi
    tail -c "+$(($1 + 1))" "$state/stack.out" | head -c 262144
}

stop() {
    alive || return 0
    group=$(cat "$state/stack.pid")
    kill -TERM "-$group" 2>/dev/null || true
    i=0
    while alive && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "-$group" 2>/dev/null || true
}

datapath() {
    [ "$1" != system ] && command -v ovs-vsctl >/dev/null || return 0
    bridge=$(ovs-vsctl get open . external_ids:ovn-bridge 2>/dev/null | tr -d '"') || return 0
    [ -n "$bridge" ] || return 0
    ovs-vsctl set open . "external_ids:ovn-bridge-datapath-type=$1"
    ovs-vsctl --if-exists set bridge "$bridge" "datapath_type=$1"
}

chassis_name() {  # empty where OVS or the name is not there
    command -v ovs-vsctl >/dev/null || return 0
    ovs-vsctl get open . external_ids:hostname 2>/dev/null | tr -d '"' || true
}

chassis() {
    command -v ovs-vsctl >/dev/null || return 0
    ovs-vsctl get open . external_ids:ovn-bridge >/dev/null 2>&1 || return 0
    hosts=$(computes)
    [ -n "$hosts" ] && [ "$(printf '%s\n' "$hosts" | wc -l)" -eq 1 ] || return 0
    was=$(chassis_name)
    echo "chassis host name: ${was:-none} -> $hosts"
    [ "$hosts" != "$was" ] || return 0
    ovs-vsctl set open . "external_ids:hostname=$hosts"
}

agent_hosts() {
    hostname
    chassis_name
}

idle() {
    for unit in "$@"; do
        systemctl is-enabled --quiet "$unit" 2>/dev/null \
            || systemctl is-active --quiet "$unit" || continue
        ! grep -qx "$unit" "$state/services.before" 2>/dev/null || continue
        if [ "$unit" = apache2.service ] && [ -d /etc/apache2/sites-enabled ] \
                && find /etc/apache2/sites-enabled -mindepth 1 ! -name 000-default.conf \
                    | grep -q .; then
            continue
        fi
        echo "idle: $unit"
        systemctl disable --now --quiet "$unit"
    done
}

seal() {
    machine=$(cat /etc/machine-id)
    for wanted in "$units"/multi-user.target.wants/devstack@*.service rabbitmq-server.service \
            ovn-controller.service ovn-controller-vtep.service; do
        unit=${wanted##*/}
        [ -e "$units/$unit" ] || [ -e "/lib/systemd/system/$unit" ] || continue
        # a unit that does not start at boot (idle) stays off in a clone: resume.py starts
        # the sealed ones
        systemctl is-enabled --quiet "$unit" 2>/dev/null || continue
        mkdir -p "$units/$unit.d"
        printf '[Service]\nExecCondition=/bin/grep -qx %s /etc/machine-id\n' "$machine" \
            > "$units/$unit.d/$origin_drop_in"
    done
    systemctl daemon-reload
}

computes() {  # DevStack's n-cpu reports as the host name; each fake n-cpu-N as set in its conf
    for unit in "$units"/devstack@n-cpu.service "$units"/devstack@n-cpu-*.service; do
        [ -e "$unit" ] || continue
        name=${unit##*/devstack@n-cpu}
        name=${name%.service}
        if [ -z "$name" ]; then
            hostname
        else
            sed -n 's/^host *= *//p' "/etc/nova/nova-fake.conf$name" | tail -n 1
        fi
    done
}

discover() {  # as DevStack's tools/discover_hosts.sh, with the virtualenv's nova-manage
    flock "$1" env -i PATH="$home/data/venv/bin:$path" HOME=$home \
        setpriv --reuid=stack --regid=stack --init-groups \
        nova-manage cell_v2 discover_hosts --verbose
}

cleanup() {
    stop
    # a stack.sh that was ended mid-install leaves dpkg interrupted: finish its configuring
    # (waiting out a dpkg of that run still going) so that the purge can run
    i=0
    while [ -n "$(ls -A /var/lib/dpkg/updates 2>/dev/null)" ] && [ $i -lt 120 ]; do
        DEBIAN_FRONTEND=noninteractive dpkg --configure -a --force-confdef --force-confold \
            >"$state/dpkg-configure.out" 2>&1 || sleep 5
        i=$((i + 1))
    done
    if [ -x "$devstack/unstack.sh" ] && getent passwd stack >/dev/null; then
        (cd "$devstack" && as_stack timeout 600 ./unstack.sh) >"$state/unstack.out" 2>&1 \
            || tail -n 3 "$state/unstack.out" >&2
        (cd "$devstack" && as_stack timeout 900 ./clean.sh) >"$state/clean.out" 2>&1 \
            || tail -n 3 "$state/clean.out" >&2
    fi
    # clean.sh leaves apache2 (and other services DevStack started) running
    if [ -f "$state/services.before" ]; then
        running_services | comm -13 "$state/services.before" - | while read -r unit; do
            systemctl stop "$unit" || true
            systemctl disable "$unit" 2>/dev/null || true
        done
    fi
    for drop_in in "$units"/*.service.d/"$origin_drop_in"; do
        [ -e "$drop_in" ] || continue
        rm -f "$drop_in"
        rmdir "${drop_in%/*}" 2>/dev/null || true
    done
    if [ -f "$state/ksm.mounted" ]; then umount "$ksm" 2>/dev/null || true; fi
    if [ -f "$state/tun.created" ]; then rm -f "$tun_rule" /dev/net/tun; fi
    if [ -f "$state/iscsid.drop-in" ]; then
        rm -f "$iscsid_drop_in"
        rmdir "${iscsid_drop_in%/*}" 2>/dev/null || true
        if command -v systemctl >/dev/null; then systemctl daemon-reload; fi
    fi
    if [ -f "$state/ovs.drop-in" ]; then
        rm -f "$ovs_drop_in"
        rmdir "${ovs_drop_in%/*}" 2>/dev/null || true
        systemctl daemon-reload
    fi
    if [ -f "$state/pip.conf.before" ]; then cp -p "$state/pip.conf.before" /etc/pip.conf
    else rm -f /etc/pip.conf
    fi
    if [ -f "$state/sudoers.before" ]; then
        drop_ins | comm -13 "$state/sudoers.before" - | while read -r file; do
            rm -f "/etc/sudoers.d/$file"
        done
    fi
    if [ -f "$state/user.created" ] && getent passwd stack >/dev/null; then
        userdel --force --remove stack 2>/dev/null || userdel --force stack
        rm -rf "$home"
    fi
    rm -rf /etc/openstack "$state"
}

"$action" "$@"
