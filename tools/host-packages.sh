#!/usr/bin/env bash
# Install the Debian packages benchbed's demo and tests need, without letting
# their maintainer scripts start daemons (benchbed starts its own, bound to its
# own bridge addresses).
set -euo pipefail
PACKAGES=(
  openssh-server openssh-client iproute2 procps curl util-linux
  lxc lxc-templates debootstrap dnsmasq-base dnsmasq-utils apt-cacher-ng rsync
  postgresql
  libvirt-daemon-system libvirt-clients libvirt-dev qemu-system-x86 qemu-utils pkg-config
  e2fsprogs shellcheck git gawk
  chromium  # headless: the report test opens a report in it
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
policy=/usr/sbin/policy-rc.d
had_policy=0; [ -e "$policy" ] && had_policy=1
if [ $had_policy -eq 0 ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; fi
trap '[ $had_policy -eq 0 ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
