#!/usr/bin/env bash
# tools/venv.sh DIR PYTHON REQUIREMENT...: a virtualenv at DIR, pip upgraded, REQUIREMENTs in.
set -euo pipefail
dir=$1
python=$2
shift 2
"$python" -m venv "$dir"
"$dir/bin/pip" install --upgrade pip
"$dir/bin/pip" install "$@"
