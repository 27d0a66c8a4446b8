#!/bin/sh
# Restart a service that benchbed has just configured: sh -s -- UNIT MARK
# The unit gets a drop-in whose ExecCondition skips its start unless MARK holds this machine's
# machine-id, and MARK is set to it here: on this machine's boots it starts as before, but a
# server started from a snapshot of it (a new machine-id) does not start it at boot with the
# snapshot's configuration, only to be restarted by the engine with its own a moment later.
set -eu
unit=$1 mark=$2
dropin=/etc/systemd/system/$unit.service.d/benchbed-configured.conf
wanted="[Service]
ExecCondition=/usr/bin/cmp -s /etc/machine-id $mark"
if [ "$(cat "$dropin" 2>/dev/null || true)" != "$wanted" ]; then
    mkdir -p "${dropin%/*}"
    printf '%s\n' "$wanted" > "$dropin"
    systemctl daemon-reload
fi
cmp -s /etc/machine-id "$mark" || cp /etc/machine-id "$mark"
service "$unit" restart
