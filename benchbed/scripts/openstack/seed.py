#!/usr/bin/python3
"""benchbed: this server's login key, host name and address from Nova's config drive.

Runs at boot before systemd-networkd: mounts the drive labelled config-2, writes the key pair
to root's authorized_keys, the host name, and a networkd file per NIC with its static address
(network_data.json: Neutron's fixed IPs), and gives the server a host key of its own.
"""

import glob
import ipaddress
import json
import os
import subprocess
import time

MOUNT = "/run/benchbed-config-drive"
WAIT = 60


def find_drive() -> str:
    deadline = time.monotonic() + WAIT
    while True:
        found = subprocess.run(["blkid", "-L", "config-2"], capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.strip():
            return found.stdout.strip()
        if time.monotonic() > deadline:
            raise SystemExit("benchbed-seed: no config drive (label config-2)")
        time.sleep(0.5)


def network_files(network: dict) -> dict[str, str]:
    macs = {link["id"]: link["ethernet_mac_address"] for link in network.get("links", [])}
    files = {}
    for index, net in enumerate(network.get("networks", [])):
        mac = macs.get(net.get("link"))
        if mac is None:
            continue
        lines = ["[Match]", f"MACAddress={mac}", "", "[Network]"]
        if net["type"] == "ipv4":
            prefix = ipaddress.IPv4Network(f"0.0.0.0/{net['netmask']}").prefixlen
            lines.append(f"Address={net['ip_address']}/{prefix}")
            for route in net.get("routes", []):
                if route.get("network") == "0.0.0.0":
                    lines.append(f"Gateway={route['gateway']}")
        elif net["type"] == "ipv4_dhcp":
            lines.append("DHCP=ipv4")
        else:
            continue
        files[f"/run/systemd/network/10-benchbed-{index}.network"] = "\n".join(lines) + "\n"
    return files


def main() -> None:
    os.makedirs(MOUNT, exist_ok=True)
    subprocess.run(["mount", "-o", "ro", find_drive(), MOUNT], check=True)
    try:
        latest = os.path.join(MOUNT, "openstack", "latest")
        with open(os.path.join(latest, "meta_data.json")) as handle:
            meta = json.load(handle)
        network_path = os.path.join(latest, "network_data.json")
        network = {}
        if os.path.exists(network_path):
            with open(network_path) as handle:
                network = json.load(handle)
    finally:
        subprocess.run(["umount", MOUNT], check=True)
    keys = list(meta.get("public_keys", {}).values())
    os.makedirs("/root/.ssh", mode=0o700, exist_ok=True)
    with open("/root/.ssh/authorized_keys", "w") as handle:
        handle.write("".join(key.strip() + "\n" for key in keys))
    os.chmod("/root/.ssh/authorized_keys", 0o600)
    hostname = meta.get("hostname", "").split(".")[0]
    if hostname:
        with open("/etc/hostname", "w") as handle:
            handle.write(hostname + "\n")
        subprocess.run(["hostname", hostname], check=True)
    os.makedirs("/run/systemd/network", exist_ok=True)
    for path, text in network_files(network).items():
        with open(path, "w") as handle:
            handle.write(text)
    if not glob.glob("/etc/ssh/ssh_host_ed25519_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        "/etc/ssh/ssh_host_ed25519_key"], check=True)


main()
