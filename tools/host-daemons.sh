#!/usr/bin/env bash
# Start the daemons the demo and tests use when they are not running (PID 1 is not systemd).
set -euo pipefail
mkdir -p /run/sshd
if ! pgrep -x virtlogd >/dev/null; then virtlogd -d; fi
if ! pgrep -x libvirtd >/dev/null; then libvirtd -d; fi
# /dev/kvm as Debian's udev rule leaves it: without udev it is root-only, libvirt then finds
# KVM "not available now" on every domain lookup and re-probes QEMU (seconds per define).
if [ -c /dev/kvm ] && getent group kvm >/dev/null; then chgrp kvm /dev/kvm; chmod 660 /dev/kvm; fi
