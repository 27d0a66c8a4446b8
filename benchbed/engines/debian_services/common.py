"""Steps several recipes share: a MariaDB database per service, the registration in Keystone,
uwsgi sizing, waiting for APIs."""

import re

from benchbed.engines.debian_services import Context
from benchbed.engines.debian_services.catalogue import Catalogue
from benchbed.errors import BenchbedError
from benchbed.server import run_script

# Debian runs Keystone under uwsgi with 8 processes x 32 threads, which takes much of a
# small server's memory for Keystone alone; a benchmark target does better with fewer,
# single-threaded workers, which still serve a Rally task at concurrency 3.
UWSGI_PROCESSES = 4
UWSGI_THREADS = 1

# Any answer below 500 means the API is up (Glance's root answers 300, Keystone's 200); a
# 5xx while the workers are still loading is waited out like a refused connection, so
# that `deployment check`, which fails on a 5xx, does not race the service's start.
WAIT_HTTP = """\
import sys, time, urllib.error, urllib.request
url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
while True:
    try:
        urllib.request.urlopen(url, timeout=5)
        break
    except urllib.error.HTTPError as error:
        if error.code < 500:
            break
        problem = error
    except OSError as error:
        problem = error
    if time.monotonic() > deadline:
        sys.exit(f"{url} does not answer: {problem}")
    time.sleep(0.5)
"""


# The machine-id of the machine whose services were configured last (restart.sh); in the
# directory of apt.sh's baseline, which cleanup removes.
CONFIGURED_ON = "/var/lib/benchbed-debian/configured-on"

CLIENT_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,252}")
# a Debian package version (epoch, upstream, revision), spliced into SQL
PACKAGE_VERSION = re.compile(r"[0-9][A-Za-z0-9.+~:-]{0,127}")
MIGRATIONS_TABLE = ("CREATE DATABASE IF NOT EXISTS benchbed; CREATE TABLE IF NOT EXISTS "
                    "benchbed.migrations (service VARCHAR(64) PRIMARY KEY, "
                    "version VARCHAR(128) NOT NULL);")


def create_database(ctx: Context, name: str, user: str, password: str) -> None:
    """Create the database and its user, or reset the user's password (idempotent).

    The SQL goes through stdin so the password is on no command line.
    """
    quoted = password.replace("\\", "\\\\").replace("'", "\\'")
    statements = [f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4;"]
    for host in ctx.database_clients:
        if not CLIENT_HOST.fullmatch(host):  # a server fact, spliced into SQL below
            raise BenchbedError(f"database client address {host!r} is not an address")
        statements += [
            f"CREATE USER IF NOT EXISTS '{user}'@'{host}' IDENTIFIED BY '{quoted}';",
            f"ALTER USER '{user}'@'{host}' IDENTIFIED BY '{quoted}';",
            f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{user}'@'{host}';",
        ]
    ctx.database_server.ssh.run("mysql --protocol=socket -u root",
                                stdin="\n".join(statements) + "\n", timeout=60)


def migrate(ctx: Context, service: str, package: str, command: str) -> None:
    """Bring a service's database schema to its package's version, unless it is there.

    Which version a schema was last migrated for is kept in the database server itself
    (`benchbed.migrations`): it travels with the data into a snapshot and goes with it
    when MariaDB is purged. A migration costs seconds of CPU even with nothing to do.
    """
    version = ctx.run(["dpkg-query", "-W", "-f", "${Version}", package]).strip()
    if not PACKAGE_VERSION.fullmatch(version):
        raise BenchbedError(f"package {package} has no version {version[:80]!r}")
    mysql = "mysql --protocol=socket -u root -N"
    done = ctx.database_server.ssh.run(mysql, stdin=MIGRATIONS_TABLE + (
        f" SELECT version FROM benchbed.migrations WHERE service = '{service}';\n"),
        timeout=60).stdout.split()
    if done == [version]:
        return
    ctx.run(command, timeout=900)
    ctx.database_server.ssh.run(mysql, stdin=f"REPLACE INTO benchbed.migrations VALUES "
                                f"('{service}', '{version}');\n", timeout=60)


def credentials(ctx: Context, section: str, user: str, password: str) -> str:
    """An ini section with which a service logs in to Keystone as a service user."""
    return (f"[{section}]\nauth_url = {ctx.outputs['auth_url'].removesuffix('/v3')}\n"
            f"auth_type = password\nproject_domain_name = Default\n"
            f"user_domain_name = Default\nproject_name = service\nusername = {user}\n"
            f"password = {password}\nregion_name = {ctx.region}\n")


def authtoken(ctx: Context, user: str, password: str) -> str:
    """The [keystone_authtoken] section: how an API checks the tokens it is given."""
    keystone = ctx.outputs["auth_url"].removesuffix("/v3")
    return (credentials(ctx, "keystone_authtoken", user, password)
            + f"www_authenticate_uri = {keystone}\n")


def register_service(ctx: Context, name: str, service_type: str, description: str,
                     url: str) -> None:
    """Make the service's Keystone user (`name`, in the `service` project, with its password
    from `ctx.passwords[name]`), its catalogue entry and its endpoints at `url`."""
    with ctx.step(f"{name}: register in keystone", f"{service_type} service at {url}"):
        catalogue = Catalogue(ctx.outputs["auth_url"], ctx.passwords["admin"])
        catalogue.service_user(name, ctx.passwords[name])
        service_id = catalogue.service(service_type, name, description)
        catalogue.endpoints(service_id, ctx.region, url)


def service_url(address: str, port: int) -> str:
    """http://address:port, bracketing an IPv6 address."""
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}"


def database_url(ctx: Context, name: str, user: str, password: str) -> str:
    from urllib.parse import quote

    host = f"[{ctx.database_host}]" if ":" in ctx.database_host else ctx.database_host
    return f"mysql+pymysql://{user}:{quote(password, safe='')}@{host}/{name}?charset=utf8mb4"


def tune_uwsgi(ctx: Context, ini: str, processes: int = UWSGI_PROCESSES) -> None:
    """Size the workers, load the application once, and close every connection after its
    response.

    uwsgi's --http-socket does not keep connections alive but does not say so either:
    clients that reuse a pooled connection (Rally's users context) then get
    'Connection reset by peer'. `Connection: close` makes them open a new one.
    Debian's `lazy-apps = true` makes each worker import the application itself, which
    multiplies the CPU a restart costs by the number of workers; here the master loads it
    once and forks them. The master opens no database connection before the fork (each
    worker opens its own on first use), so nothing is shared that must not be.
    """
    ctx.run(["sed", "-i", "-e", f"s/^processes = .*/processes = {processes}/",
             "-e", f"s/^threads = .*/threads = {UWSGI_THREADS}/",
             "-e", "s/^lazy-apps = .*/lazy-apps = false/",
             "-e", "/^add-header = Connection: close$/d",
             "-e", "/^\\[uwsgi\\]/a add-header = Connection: close", ini])


def restart(ctx: Context, service: str) -> None:
    """Restart a service that has its final configuration, without waiting for it.

    Its unit starts at boot only on the machine that configured it (restart.sh): a server
    started from a snapshot would otherwise start it with the snapshot's passwords and keys
    (seconds of CPU for Keystone and Glance), only for this restart to replace it.
    """
    run_script(ctx.server.ssh, "debian/restart.sh", [service, CONFIGURED_ON], timeout=120)


def wait_http(ctx: Context, url: str, timeout: float = 900) -> None:
    """Wait until a service's API answers HTTP (below 500)."""
    ctx.run(["python3", "-", url, f"{timeout:.0f}"], stdin=WAIT_HTTP, timeout=timeout + 30)


def restart_and_wait(ctx: Context, service: str, url: str, timeout: float = 900) -> None:
    """Restart a service through its init system and wait until its API answers HTTP."""
    restart(ctx, service)
    wait_http(ctx, url, timeout)


def dropin_directory(service: str) -> str:
    """Where restart() puts the unit's drop-in: a path the server's cleanup removes."""
    return f"/etc/systemd/system/{service}.service.d"


def write_config(ctx: Context, path: str, text: str, group: str) -> None:
    """Write a service's config file readable by its group only (it holds passwords)."""
    ctx.server.ssh.put_file(text, path, mode=0o640)
    ctx.run(["chown", f"root:{group}", path])
