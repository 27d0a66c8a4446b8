"""MariaDB for the services' databases (SQLite fails under uwsgi: 'database is locked')."""

from benchbed.engines.debian_services import Context, Recipe
from benchbed.ports import tcp

PING = ("for i in $(seq 120); do mysqladmin --protocol=socket ping >/dev/null 2>&1 && exit 0; "
        "sleep 0.5; done; echo 'mariadb does not answer' >&2; exit 1")


# Services on other servers (MultihostEngine nodes) use this MariaDB too; its accounts are
# granted per client address with generated passwords, and root logs in by socket only.
PORT = 3306  # MariaDB's default port, kept
DEFAULT_MAX_CONNECTIONS = 151  # MariaDB's own default
LISTEN_CONF = "[mysqld]\nbind-address = 0.0.0.0\nmax_connections = {max_connections}\n"
LISTEN_FILE = "/etc/mysql/mariadb.conf.d/99-benchbed.cnf"


def configure(ctx: Context) -> None:
    connections = ctx.control_plane.database_connections
    wanted = LISTEN_CONF.format(max_connections=connections)
    with ctx.step("mariadb: start", f"max_connections {connections}"):
        written = ctx.run(["sh", "-c", 'cat "$1" 2>/dev/null || true', "read", LISTEN_FILE])
        if written != wanted:
            ctx.server.ssh.put_file(wanted, LISTEN_FILE, mode=0o644)
        # a server started from a snapshot has it running already, with this very config
        ctx.run(f"service mariadb {'start' if written == wanted else 'restart'}",
                timeout=120)
        ctx.run(PING, timeout=90)


RECIPE = Recipe(
    name="mariadb",
    packages=("mariadb-server", "python3-pymysql"),
    preseed=(),
    paths=("/etc/mysql", "/var/lib/mysql", "/var/log/mysql", "/run/mysqld"),
    services=("mariadb",),
    ports=tcp(PORT),
    configure=configure,
)


def _nothing_to_configure(ctx: Context) -> None:
    """The client needs no set-up: the databases are created on the controller's server."""


# On a MultihostEngine node, whose services keep their databases on the controller.
CLIENT_RECIPE = Recipe(
    name="mariadb-client",
    packages=("python3-pymysql",),
    preseed=(),
    paths=(),
    services=(),
    configure=_nothing_to_configure,
)
