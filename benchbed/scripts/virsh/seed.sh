#!/bin/sh
# benchbed: take this clone's login key, user and apt proxy from the kernel command line,
# and give it a host key of its own (the template ships none).
set -eu
user=root key="" proxy=""
read -r cmdline < /proc/cmdline
for arg in $cmdline; do
    case "$arg" in
        bb.user=*) user="${arg#bb.user=}" ;;
        bb.key=*) key="$(echo "${arg#bb.key=}" | base64 -d)" ;;
        bb.apt_proxy=*) proxy="${arg#bb.apt_proxy=}" ;;
    esac
done
hostkey=/etc/ssh/ssh_host_ed25519_key
[ -f "$hostkey" ] || ssh-keygen -q -t ed25519 -N "" -f "$hostkey"
getent passwd "$user" >/dev/null || useradd -m -s /bin/bash "$user"
home="$(getent passwd "$user" | cut -d: -f6)"
if [ -n "$key" ]; then
    install -d -m 700 -o "$user" "$home/.ssh"
    echo "$key" > "$home/.ssh/authorized_keys"
    chown "$user" "$home/.ssh/authorized_keys"
    chmod 600 "$home/.ssh/authorized_keys"
fi
if [ -n "$proxy" ]; then
    echo "Acquire::http::Proxy \"$proxy\";" > /etc/apt/apt.conf.d/01benchbed-proxy
fi
