#!/usr/bin/env bash
# `make demo`: a real OpenStack (Keystone + Glance from Debian 12's packages) in one LXC
# container on this machine, proven by `deployment check`, handed over as an openrc, with a
# report of where the time went, then a short Rally task against it with the system's own CPU
# and memory beside its iterations. Prints a few lines; the details are in `deployment show`
# and `task show`.
#
#   DEMO_NAME      deployment name (default: demo-openstack)
#   DEMO_NETWORK   the containers' network (default: 10.254.100.0/24); the apt cache is kept
#                  per network, so a network never used before measures a cold cache
#   DEMO_OUTPUT    where the openrc and the report go (default: .demo)
set -euo pipefail
cd "$(dirname "$0")/.."
bb=.venv/bin/benchbed
clients=.venv-clients/bin
name=${DEMO_NAME:-demo-openstack}
network=${DEMO_NETWORK:-10.254.100.0/24}
output=${DEMO_OUTPUT:-.demo}

if $bb deployment show "$name" >/dev/null 2>&1; then
  echo "deployment '$name' already exists: use it, or remove it with" >&2
  echo "  $bb deployment destroy $name" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
config=$work/demo.yaml
sed "s|^  container_name_prefix: .*|&\n  start_lxc_network: $network|" \
  samples/deployments/debian-lxc.yaml > "$config"

# doctor's summary goes to the terminal; its line per check only when one fails
if ! $bb doctor --file "$config" > "$work/doctor"; then
  grep '^FAIL' "$work/doctor" >&2
  exit 1
fi

start=$(date +%s)
echo "== deploying Keystone + Glance in an LXC container on $network (a few minutes)"
$bb deployment create --file "$config" --name "$name"
echo "== checking: token, service catalogue, every endpoint"
$bb deployment check "$name"
took=$(( $(date +%s) - start ))

mkdir -p "$output"
$bb deployment export "$name" --format openrc --output "$output/$name.openrc" 2>/dev/null
$bb deployment report "$name" --output "$output/$name-report.html" 2>/dev/null
echo "== ready in ${took}s; a short benchmark: Rally's Keystone scenarios, CPU and memory sampled"
run=$($bb task run samples/tasks/keystone-glance.yaml --deployment "$name" \
  --rally "$clients/rally" --tag demo=1 --json | .venv/bin/python -c \
  'import json, sys; print(json.load(sys.stdin)["uuid"])')
$bb task report "$run" --output "$output/$name-task.html" 2>/dev/null
echo "   use it:     source $output/$name.openrc; $clients/openstack image list"
echo "   the report: $output/$name-report.html (where the time went; open it in a browser)"
echo "   the run:    $bb task show ${run:0:8}; its page: $output/$name-task.html"
echo "   destroy it: $bb deployment destroy $name  (container, bridge, DHCP, apt proxy)"
