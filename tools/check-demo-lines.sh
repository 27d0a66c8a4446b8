#!/usr/bin/env bash
# `make demo-check`: run `make demo` as a new user would (a fresh clone of this repository's
# committed tree, its own BENCHBED_HOME, on a terminal) and fail if it printed more than
# MAX_LINES lines (default 40). The demo deployment is destroyed afterwards, and the clone
# removed, whatever happened; its report is kept in .logs/.
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
  local bb=$clone/.venv/bin/benchbed
  if [ -x "$bb" ] && ! "$bb" deployment destroy --force "$DEMO_NAME" > "$work/destroy" 2>&1 \
      && ! grep -q "no deployment named" "$work/destroy"; then
    cat "$work/destroy" >&2
    echo "== destroying $DEMO_NAME failed; kept its home, re-run:" >&2
    echo "   BENCHBED_HOME=$BENCHBED_HOME $bb deployment destroy $DEMO_NAME" >&2
    exit 1
  fi
  rm -rf "$work"
}
trap cleanup EXIT
git clone -q . "$clone"
# `script` gives make a terminal (120 x 50), as a user's shell would: steps and progress bars
# show, and are counted as the screen shows them (tools/screen-lines.py)
code=0
script -qefc "stty cols 120 rows 50; cd $(printf %q "$clone") && make demo" /dev/null \
  > "$work/output" || code=$?
lines=$(python3 tools/screen-lines.py < "$work/output")
# the demo's report stays for a look (and the README's screenshot)
mkdir -p .logs
cp "$clone/.demo/$DEMO_NAME-report.html" .logs/ 2>/dev/null || true
cat "$work/output"
echo "== make demo exited $code and printed $lines lines (at most $max allowed)"
[ "$code" -eq 0 ] && [ "$lines" -le "$max" ]
