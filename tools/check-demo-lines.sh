#!/usr/bin/env bash
# `make demo-check`: run `make demo` as a new user would (a fresh clone of this repository's
# committed tree, its own BENCHBED_HOME, on a terminal) and fail if it printed more than
# MAX_LINES lines (default 40). The demo deployment is destroyed afterwards, and the clone
# removed, whatever happened.
#
#   MAX_LINES, DEMO_NETWORK, DEMO_NAME (default: demo-check)
set -euo pipefail
cd "$(dirname "$0")/.."
max=${MAX_LINES:-40}
export DEMO_NAME=${DEMO_NAME:-demo-check}
work=$(mktemp -d)
export BENCHBED_HOME=$work/home
clone=$work/benchbed
cleanup() {
  if [ -x "$clone/.venv/bin/benchbed" ]; then
    "$clone/.venv/bin/benchbed" deployment destroy --force "$DEMO_NAME" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
git clone -q . "$clone"
# `script` gives make a terminal, as a user's shell would: steps and progress bars show
code=0
script -qefc "cd $(printf %q "$clone") && make demo" /dev/null > "$work/output" || code=$?
# what stays on the screen: the text after a line's last carriage return, without escapes
lines=$(sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\r$//' -e 's/.*\r//' "$work/output" \
  | grep -c . || true)
cat "$work/output"
echo "== make demo exited $code and printed $lines lines (at most $max allowed)"
[ "$code" -eq 0 ] && [ "$lines" -le "$max" ]
