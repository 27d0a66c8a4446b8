"""MariaDB for the services' databases (SQLite fails under uwsgi: 'database is locked')."""

from benchbed.engines.debian_services import Context, Recipe

PING = ("for i in $(seq 120); do mysqladmin --protocol=socket ping >/dev/null 2>&1 && exit 0; "
        "sleep 0.5; done; echo 'mariadb does not answer' >&2; exit 1")


def configure(ctx: Context) -> None:
    with ctx.step("mariadb: start", None):
        ctx.run("service mariadb start", timeout=120)
        ctx.run(PING, timeout=90)


RECIPE = Recipe(
    name="mariadb",
    packages=("mariadb-server", "python3-pymysql"),
    preseed=(),
    paths=("/etc/mysql", "/var/lib/mysql", "/var/log/mysql", "/run/mysqld"),
    services=("mariadb",),
    configure=configure,
)
