#!/usr/bin/env bash
# tools/quietly.sh LABEL COMMAND [ARG...]: run a setup step with its output (apt, dpkg, pip)
# in a log file, and print one line: LABEL and how long it took. If the step fails, print
# the log's last lines and exit with the step's code.
#
#   BENCHBED_SETUP_LOG  the log file (default .logs/setup.log); its path is printed by the
#                       first step that writes to it, so once per `make` run
set -uo pipefail
label=$1
shift
log=${BENCHBED_SETUP_LOG:-.logs/setup.log}
mkdir -p "$(dirname "$log")"
if [ ! -s "$log" ]; then
  echo "== setup output (apt, dpkg, pip) goes to $log"
fi
printf '### %s %s: %s\n' "$(date -u +%FT%TZ)" "$label" "$*" >> "$log"
start=$(date +%s)
"$@" >> "$log" 2>&1
code=$?
took=$(( $(date +%s) - start ))
if [ "$code" -eq 0 ]; then
  echo "== $label: done (${took}s)"
  exit 0
fi
echo "== $label: FAILED (exit $code after ${took}s); the last lines of $log:"
tail -n 30 "$log" | sed 's/^/   /'
exit "$code"
