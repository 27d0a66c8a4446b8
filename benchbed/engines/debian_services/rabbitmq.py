"""RabbitMQ, the message queue of Nova's services (and neutron-rpc-server's).

It listens on every address (its default) so that compute nodes on other servers reach it;
each client gets an account of its own, and the `guest` account stays limited to loopback.
"""

import shlex

from benchbed.engines.debian_services import Context, Recipe
from benchbed.ports import tcp
from benchbed.server import Server

PORT = 5672
# rabbitmqctl reads the password from stdin when it is not on the command line (printf is a
# shell builtin: the password is in no process's arguments); an account that exists is
# deleted first, so that a re-run converges on the new password.
ENSURE_USER = """\
set -e
user=$1
IFS= read -r password
rabbitmqctl -q list_users </dev/null | cut -f1 | grep -qxF "$user" &&
  rabbitmqctl -q delete_user "$user" </dev/null
printf '%s\\n' "$password" | rabbitmqctl -q add_user "$user"
rabbitmqctl -q set_permissions -p / "$user" '.*' '.*' '.*'
"""
WAIT = ("for i in $(seq 120); do rabbitmqctl -q await_startup >/dev/null 2>&1 && exit 0; "
        "sleep 1; done; echo 'rabbitmq does not answer' >&2; exit 1")


def ensure_user(server: Server, user: str, password: str) -> None:
    """An account with all rights on the default vhost; the password goes through stdin."""
    server.ssh.run(f"sh -c {shlex.quote(ENSURE_USER)} - {shlex.quote(user)}",
                   stdin=password + "\n", timeout=120)


def transport_url(user: str, password: str, host: str) -> str:
    """oslo.messaging's URL of the queue, the password quoted for a URL."""
    from urllib.parse import quote

    bracketed = f"[{host}]" if ":" in host else host
    return f"rabbit://{quote(user, safe='')}:{quote(password, safe='')}@{bracketed}:{PORT}/"


def configure(ctx: Context) -> None:
    with ctx.step("rabbitmq: start", f"port {PORT}"):
        # started, not restarted: benchbed writes no config of its own for it, and a restart
        # would cost a re-run another slow Erlang start-up
        ctx.run("service rabbitmq-server start", timeout=180)
        ctx.run(WAIT, timeout=150)
    with ctx.step("rabbitmq: account", "openstack"):
        ensure_user(ctx.server, "openstack", ctx.passwords["rabbit"])


RECIPE = Recipe(
    name="rabbitmq",
    packages=("rabbitmq-server",),
    preseed=(),
    paths=("/etc/rabbitmq", "/var/lib/rabbitmq", "/var/log/rabbitmq"),
    services=("rabbitmq-server",),
    ports=tcp(PORT),
    configure=configure,
)
