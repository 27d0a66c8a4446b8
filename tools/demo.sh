#!/usr/bin/env bash
# `make demo`: a real OpenStack (Keystone + Glance from Debian 12's packages) in one LXC
# container on this machine, proven by `deployment check`, handed over as an openrc.
#
#   DEMO_NAME      deployment name (default: demo-openstack)
#   DEMO_NETWORK   the containers' network (default: 10.254.100.0/24); the apt cache is kept
#                  per network, so a network never used before measures a cold cache
set -euo pipefail
cd "$(dirname "$0")/.."
bb=.venv/bin/benchbed
name=${DEMO_NAME:-demo-openstack}
network=${DEMO_NETWORK:-10.254.100.0/24}

if $bb deployment show "$name" >/dev/null 2>&1; then
  echo "deployment '$name' already exists: use it, or remove it with" >&2
  echo "  $bb deployment destroy $name" >&2
  exit 1
fi

config=$(mktemp --suffix=.yaml)
trap 'rm -f "$config"' EXIT
sed "s|^  container_name_prefix: .*|&\n  start_lxc_network: $network|" \
  samples/deployments/debian-lxc.yaml > "$config"

start=$(date +%s)
echo "== deploying Keystone + Glance in an LXC container on $network (a few minutes)"
$bb deployment create --file "$config" --name "$name"
echo "== checking: token, service catalogue, every endpoint"
$bb deployment check "$name"
took=$(( $(date +%s) - start ))

echo
echo "== openrc (source it, then e.g.: openstack image list)"
$bb deployment export "$name" --format openrc
echo
echo "== ready in ${took}s. Other formats: $bb deployment export $name --format clouds.yaml|rally-spec|json"
echo "== destroy it (container, bridge, DHCP and apt proxy all go) with:"
echo "   $bb deployment destroy $name"
