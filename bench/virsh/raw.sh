#!/bin/sh
# One VM to SSH-ready with raw virsh commands, as a person would script it: an overlay on the
# template, a domain booting the template's kernel, its DHCP lease, then ssh until it answers.
# DOMAIN_TYPE is kvm or qemu, the one benchbed picks on this host (bench/virsh/run asks
# VirshProvider's choose_domain_type); kvm gets the host's CPU passed through, as benchbed's.
# Usage: raw.sh NAME TEMPLATE BRIDGE PRIVATE_KEY LEASE_FILE DOMAIN_TYPE
set -eu
name=$1 template=$2 bridge=$3 key=$4 leases=$5 domain_type=$6
case $domain_type in
    kvm) cpu="<cpu mode='host-passthrough'/>" ;;
    qemu) cpu="" ;;
    *) echo "raw.sh: domain type must be kvm or qemu, not '$domain_type'" >&2; exit 2 ;;
esac
images=/var/lib/benchbed/images
mac=52:54:00:$(od -An -N3 -tx1 /dev/urandom | sed 's/^ *//; s/ /:/g')
pubkey=$(base64 -w0 "$key.pub")
machine_id=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
virsh -q vol-create-as benchbed "$name.qcow2" 8G --format qcow2 \
    --backing-vol "$images/$template.qcow2" --backing-vol-format qcow2 >/dev/null
xml=$(mktemp)
cat > "$xml" <<XML
<domain type='$domain_type'>
  <name>$name</name>
  <memory unit='MiB'>1024</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>$images/$template.vmlinuz</kernel>
    <initrd>$images/$template.initrd</initrd>
    <cmdline>root=/dev/vda rw console=ttyS0 quiet bb.user=root bb.key=$pubkey systemd.machine_id=$machine_id systemd.hostname=$name</cmdline>
  </os>
  <features><acpi/></features>
  $cpu
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='benchbed' volume='$name.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='bridge'><source bridge='$bridge'/><mac address='$mac'/><model type='virtio'/></interface>
    <serial type='pty'><target port='0'/></serial>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <memballoon model='none'/>
  </devices>
</domain>
XML
virsh -q define "$xml" >/dev/null
rm -f "$xml"
virsh -q start "$name" >/dev/null
ip=""
while [ -z "$ip" ]; do
    sleep 0.5
    ip=$(awk -v mac="$mac" '$2 == mac { print $3 }' "$leases" 2>/dev/null || true)
done
until ssh -i "$key" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o ConnectTimeout=5 -o LogLevel=ERROR "root@$ip" true; do
    sleep 0.5
done
