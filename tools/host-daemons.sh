#!/usr/bin/env bash
# Start the daemons the demo and tests use when they are not running (PID 1 is not systemd).
set -euo pipefail
mkdir -p /run/sshd
if ! pgrep -x virtlogd >/dev/null; then virtlogd -d; fi
if ! pgrep -x libvirtd >/dev/null; then libvirtd -d; fi
