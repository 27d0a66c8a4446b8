"""An example for every command's --help, kept in one table and attached to the commands.

One table rather than one epilog per decorator, so that a test can walk the command tree and
demand an example of every command, new ones included.
"""

import click

EXAMPLES: dict[str, list[str]] = {
    "": ["benchbed doctor", "benchbed deployment create --file hosts.yaml --name hosts",
         "benchbed deployment list"],
    "deployment": ["benchbed deployment create --file samples/deployments/netns-hosts.yaml "
                   "--name hosts", "benchbed deployment show hosts"],
    "deployment check": ["benchbed deployment check hosts", "benchbed deployment check --json"],
    "deployment config": ["benchbed deployment config hosts --json"],
    "deployment create": ["benchbed deployment create --file samples/deployments/"
                          "netns-hosts.yaml --name hosts",
                          "benchbed deployment create --fromenv --name my-cloud   "
                          "# the cloud of the OS_* variables"],
    "deployment destroy": ["benchbed deployment destroy hosts",
                           "benchbed deployment destroy --force hosts   "
                           "# its holder was killed"],
    "deployment export": ["benchbed deployment export my-cloud --format openrc > openrc",
                          "benchbed deployment export hosts --format ssh-config "
                          "--output hosts.ssh_config"],
    "deployment forget-host-key": ["benchbed deployment forget-host-key hosts 10.0.3.20:22"],
    "deployment list": ["benchbed deployment list", "benchbed deployment list --json"],
    "deployment recreate": ["benchbed deployment recreate hosts"],
    "deployment report": ["benchbed deployment report hosts --output hosts.html",
                          "benchbed deployment report hosts --format json"],
    "deployment show": ["benchbed deployment show hosts",
                        "benchbed deployment show hosts --steps   # every step, not per server"],
    "deployment use": ["benchbed deployment use hosts"],
    "deployment validate": ["benchbed deployment validate --file my-deployment.yaml"],
    "doctor": ["benchbed doctor", "benchbed doctor --file my-deployment.yaml"],
    "gc": ["benchbed gc --file ec2-provider.yaml   # list what nothing owns any more",
           "benchbed gc --file ec2-provider.yaml --delete"],
    "image": ["benchbed image build --provider lxc", "benchbed image list --provider virsh"],
    "image build": ["benchbed image build --provider lxc --release trixie",
                    "benchbed image build --provider virsh --name debian-bookworm"],
    "image delete": ["benchbed image delete --provider lxc benchbed-base-trixie"],
    "image list": ["benchbed image list --provider lxc --json"],
    "image save": ["benchbed image save lab --name keystone-glance"],
    "plugin": ["benchbed plugin list"],
    "plugin list": ["benchbed plugin list --json"],
    "task": ["benchbed task run keystone.yaml --deployment lab", "benchbed task list"],
    "task list": ["benchbed task list --deployment lab --json"],
    "task run": ["benchbed task run keystone.yaml --deployment lab --tag build=42",
                 "benchbed task run keystone.yaml --deployment lab --interval 0.5 "
                 "--rally /opt/rally/bin/rally --json"],
    "task show": ["benchbed task show 3f2a   # a unique start of the run's uuid",
                  "benchbed task show 3f2a --json"],
    "task report": ["benchbed task report 7a5c --output run.html   # a run by a start of its id",
                    "benchbed task report 7a5c --format json"],
    "task compare": ["benchbed task compare 3f2a 9c41   # B against A, by id or its start",
                     "benchbed task compare 3f2a 9c41 --fail-above 10   # exit 1: >10 % slower"],
}


def attach(command: click.Command, path: str = "") -> None:
    """Give each command of the tree its examples as the epilog of its --help."""
    examples = EXAMPLES.get(path)
    if examples:
        lines = "\n".join(f"  {example}" for example in examples)
        command.epilog = f"Examples:\n\n\b\n{lines}"
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            attach(sub, f"{path} {name}".strip())
