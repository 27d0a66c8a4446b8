"""Hostile input through the real CLI and a real sshd (NetnsProvider hosts, root only).

Networks: 10.254.180.0/22 only (this file's range), so it runs beside the other suites.
"""

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml

from benchbed.server import Server, run_script
from tests.conftest import Cli, ledger_rows

HOSTILE_ARGUMENTS = ["$(touch {marker})", "`touch {marker}`", "'; touch {marker}; '",
                     "a\nb; touch {marker}", '" && touch {marker} && "', "-n", "*", "~root",
                     "tab\there", "back\\slash", ""]


def write_config(directory: Path, name: str, config: dict) -> str:
    path = directory / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


def netns_config(network: str, amount: int = 1) -> dict:
    return {"type": "ServersEngine",
            "provider": {"type": "NetnsProvider", "network": network, "amount": amount}}


def assert_one_clear_line(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("benchbed: error: "), result.stderr
    assert text in lines[0], lines[0]


@pytest.fixture
def host(bb: Cli, tmp_path: Path) -> Server:
    """One real sshd in a network namespace, reached as root with the deployment's key."""
    bb.ok("deployment", "create", "--no-use", "--name", "sshd", "--file",
          write_config(tmp_path, "sshd.yaml", netns_config("10.254.180.0/24")))
    data = bb.json("deployment", "show", "sshd")["endpoints"]["servers"][0]
    from benchbed.deployment import Deployment

    # bound to its deployment, whose recorded host key the SSH client checks
    server = Server(host=data["host"], user="root", key=data["key"],
                    deployment=Deployment.get("sshd"))
    yield server
    server.close()


def test_remote_commands_pass_every_argument_literally(host: Server, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    values = [value.format(marker=marker) for value in HOSTILE_ARGUMENTS]
    result = host.ssh.run(["printf", "%s\\0", *values], timeout=30)
    assert result.stdout.split("\0")[:-1] == values
    assert not marker.exists()


def test_package_scripts_take_hostile_values_as_plain_arguments(host: Server, tmp_path: Path
                                                                ) -> None:
    marker = tmp_path / "ran"
    for value in HOSTILE_ARGUMENTS[:5]:
        hostile = value.format(marker=marker)
        # the probe that DebianEngine once built from its apt_proxy option
        probe = run_script(host.ssh, "debian/apt.sh", ["probe", hostile, "80"], check=False,
                           timeout=30)
        assert probe.exit_code != 0
        exists = run_script(host.ssh, "lxc/image.sh", ["exists", hostile], check=False,
                            timeout=30)
        assert exists.exit_code == 1
    assert not marker.exists()
    # the read-only actions of DebianEngine's script, on a host that is Debian 12 itself
    found = run_script(host.ssh, "debian/apt.sh", ["check"], timeout=30).stdout
    assert "/apt-get\n" in found and "/debconf-set-selections\n" in found
    assert found.rstrip().endswith("release=bookworm")
    assert run_script(host.ssh, "debian/apt.sh", ["nonsense"], check=False,
                      timeout=30).exit_code == 2


@pytest.mark.parametrize("name", ["x\ntouch /tmp/bb-hardening-pwned", "a;id", "$(id)",
                                  "h\n    ProxyCommand touch /tmp/bb-hardening-pwned",
                                  "0b7d4c4e-1d2b-4e6a-9a43-4b1e2f3a4c5d", "a" * 64])
def test_hostile_names_are_refused_and_create_nothing(bb: Cli, tmp_path: Path, home: Path,
                                                      name: str) -> None:
    config = write_config(tmp_path, "c.yaml", netns_config("10.254.181.0/24"))
    result = bb("deployment", "create", "--name", name, "--file", config)
    assert_one_clear_line(result, 2, "deployment name")
    assert bb.json("deployment", "list") == []
    assert not (home / "deployments").exists() or not any((home / "deployments").iterdir())
    assert not Path("/tmp/bb-hardening-pwned").exists()


def test_destroy_leaves_nothing_on_disk(bb: Cli, tmp_path: Path, home: Path) -> None:
    created = bb.ok("deployment", "create", "--name", "gone.1", "--file",
                    write_config(tmp_path, "c.yaml", netns_config("10.254.182.0/24", 2)))
    assert "destroy it with: benchbed deployment destroy gone.1" in created.stderr
    details = bb.json("deployment", "show", "gone.1")
    folder = home / "deployments" / details["uuid"]
    bb.ok("deployment", "export", "--format", "ssh-config")  # writes known_hosts there
    assert {"id_ed25519", "deployment.log", "known_hosts", "netns"} <= \
        {p.name for p in folder.iterdir()}
    current = (home / "current").read_text()
    assert current == details["uuid"] + "\n"
    bb.ok("deployment", "destroy")
    assert not folder.exists()
    assert not (home / "current").exists()
    left = {str(p.relative_to(home)) for p in home.rglob("*")}
    # what stays is the home's own: the database, the lock its first migration is made under
    # (empty), and the digests of configs that passed validation (benchbed/schema_passes.py:
    # hashes, no config text)
    assert left <= {"benchbed.sqlite", "benchbed.sqlite-shm", "benchbed.sqlite-wal",
                    "benchbed.sqlite.migrate-lock", "deployments", "schema-passes"}, left
    assert ledger_rows(home) == 0


def test_current_deployment_file_is_a_uuid_read_exactly(bb: Cli, tmp_path: Path, home: Path
                                                        ) -> None:
    cloud = {"type": "ExistingCloud", "auth_url": "http://127.0.0.1:9/v3",
             "admin": {"username": "admin", "password": "p"}}
    config = write_config(tmp_path, "cloud.yaml", cloud)
    bb.ok("deployment", "create", "--no-preflight", "--name", "one", "--file", config)
    bb.ok("deployment", "create", "--no-preflight", "--name", "two", "--file", config,
          "--no-use")
    assert bb.json("deployment", "show")["name"] == "one"
    # a padded name in the file selects nothing, rather than "two" after stripping
    (home / "current").write_text("  two \n")
    assert_one_clear_line(bb("deployment", "show"), 2, "does not hold a deployment uuid")
    bb.ok("deployment", "use", "two")
    assert bb.json("deployment", "show")["name"] == "two"
    uuid_of_two = bb.json("deployment", "show")["uuid"]
    assert (home / "current").read_text() == uuid_of_two + "\n"
    assert bb.json("deployment", "show", uuid_of_two.upper())["name"] == "two"


def test_export_into_a_missing_folder_is_one_line(bb: Cli, tmp_path: Path) -> None:
    cloud = {"type": "ExistingCloud", "auth_url": "http://127.0.0.1:9/v3",
             "admin": {"username": "admin", "password": "p"}}
    bb.ok("deployment", "create", "--no-preflight", "--name", "exp", "--file",
          write_config(tmp_path, "cloud.yaml", cloud))
    (tmp_path / "file").write_text("")
    for target in (tmp_path / "missing" / "openrc", tmp_path / "file" / "openrc"):
        result = bb("deployment", "export", "--format", "openrc", "--output", str(target))
        assert_one_clear_line(result, 2, f"cannot write {target}")


def alias_bomb(levels: int, width: int) -> str:
    """Each level a list of `width` aliases of the one before: width ** levels values."""
    lines = ["a0: &a0 [x]"]
    for level in range(1, levels):
        aliases = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    return "\n".join(lines) + "\ntype: ServersEngine\n"


@pytest.mark.parametrize(("content", "message"), [
    (b"type: ServersEngine\nname: \xff\xfe\n", "is not UTF-8 text (byte 26)"),
    (alias_bomb(9, 9).encode(), "once its YAML aliases are expanded"),
])
def test_bad_files_are_one_line_exit_2(bb: Cli, tmp_path: Path, content: bytes, message: str
                                       ) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    for command in (["validate"], ["create", "--name", "bad"]):
        assert_one_clear_line(bb("deployment", *command, "--file", str(path)), 2, message)
    assert bb.json("deployment", "list") == []


def test_a_network_of_another_deployment_is_refused_before_anything_exists(
        bb: Cli, tmp_path: Path, home: Path) -> None:
    bb.ok("deployment", "create", "--name", "first", "--file",
          write_config(tmp_path, "a.yaml", netns_config("10.254.183.0/24")))
    for overlapping in ("10.254.183.0/24", "10.254.183.64/26"):
        result = bb("deployment", "create", "--name", "second", "--file",
                    write_config(tmp_path, "b.yaml", netns_config(overlapping)))
        assert_one_clear_line(result, 2, "config provider.network: ")
        assert "overlaps 10.254.183.0/24" in result.stderr
    assert [d["name"] for d in bb.json("deployment", "list")] == ["first"]
    for special in ("127.0.0.0/29", "224.0.1.0/29", "169.254.9.0/29"):
        result = bb("deployment", "validate", "--file",
                    write_config(tmp_path, "s.yaml", netns_config(special)))
        assert_one_clear_line(result, 2, "config provider.network: ")


def test_secrets_of_any_type_stay_out_of_errors_and_show(bb: Cli, tmp_path: Path) -> None:
    bad = {"type": "ServersEngine", "provider": {"type": "ExistingServers", "credentials": [
        {"host": "10.254.181.9", "user": "root", "password": 24681357}]}}
    result = bb("deployment", "create", "--name", "s", "--file",
                write_config(tmp_path, "bad.yaml", bad))
    assert_one_clear_line(result, 2, "credentials[0].password: must be of type string")
    assert "24681357" not in result.stderr
    cloud = {"type": "ExistingCloud", "auth_url": "http://admin:Url-Secret-8@127.0.0.1:9/v3",
             "admin": {"username": "admin", "password": "p"}}
    bb.ok("deployment", "create", "--no-preflight", "--name", "urls", "--file",
          write_config(tmp_path, "cloud.yaml", cloud))
    shown = [bb.ok("deployment", *args).stdout for args in
             (("show", "urls"), ("show", "urls", "--json"), ("config", "urls"),
              ("config", "urls", "--json"))]
    checked = bb("deployment", "check", "urls")
    for text in [*shown, checked.stdout, checked.stderr]:
        assert "Url-Secret-8" not in text
    assert "http://***@127.0.0.1:9/v3" in shown[0]
    assert json.loads(shown[3])["auth_url"] == "http://***@127.0.0.1:9/v3"


def test_database_and_its_files_are_private(bb: Cli, tmp_path: Path, home: Path) -> None:
    """Secrets at rest: the database and everything under the home are the user's only."""
    cloud = {"type": "ExistingCloud", "auth_url": "http://127.0.0.1:9/v3",
             "admin": {"username": "admin", "password": "At-Rest-Secret-5"}}
    bb.ok("deployment", "create", "--no-preflight", "--name", "rest", "--file",
          write_config(tmp_path, "cloud.yaml", cloud))
    assert oct(home.stat().st_mode & 0o777) == "0o700"
    for path in home.rglob("*"):
        mode = path.stat().st_mode & 0o777
        assert mode in (0o600, 0o700), f"{path} is {oct(mode)}"
    with sqlite3.connect(home / "benchbed.sqlite") as db:
        stored = db.execute("SELECT config FROM deployments").fetchone()[0]
    assert "At-Rest-Secret-5" in stored  # kept, so that destroy and export work unattended
