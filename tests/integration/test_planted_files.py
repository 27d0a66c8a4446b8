"""Files another user can plant, and environment errors, through the real CLI run as root.

Two unprivileged users made here (bbh26f1, bbh26f2, removed after) plant links and files
in a shared sticky folder (mode 1777, as /tmp) before root runs `.venv/bin/benchbed`.
Network range of this file: 10.254.226.0/28 (one NetnsProvider host, for the umask test).
"""

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

BENCHBED = Path(sys.executable).with_name("benchbed")
USERS = ("bbh26f1", "bbh26f2")
NETWORK = "10.254.226.0/28"
CLOUD = {"type": "ExistingCloud", "auth_url": "http://127.0.0.1:9/v3",
         "admin": {"username": "admin", "password": "Planted-Secret-26"}}
VICTIM_TEXT = "root's own file, not to be touched\n"

def run_cli(home: Path, *args: str, env: dict[str, str] | None = None, umask: int | None = None
            ) -> subprocess.CompletedProcess[str]:
    """The real console script as root, with this home and no database URL unless `env`
    gives one."""
    base = {key: value for key, value in os.environ.items() if key != "BENCHBED_DATABASE_URL"}
    return subprocess.run([str(BENCHBED), *args], capture_output=True, text=True, timeout=300,
                          env={**base, "BENCHBED_HOME": str(home), **(env or {})},
                          preexec_fn=None if umask is None else (lambda: os.umask(umask)))


def as_user(user: str, *argv: str) -> None:
    subprocess.run(["runuser", "-u", user, "--", *argv], check=True, timeout=30)


def assert_one_clear_line(result: subprocess.CompletedProcess[str], text: str,
                          code: int = 2) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("benchbed: error: "), lines[0]
    assert "internal error" not in lines[0] and text in lines[0], lines[0]


def uid_of(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


@pytest.fixture(scope="module")
def users() -> Iterator[tuple[str, str]]:
    """Two unprivileged users of this test, removed afterwards also when it fails."""
    try:
        for user in USERS:
            subprocess.run(["userdel", user], capture_output=True, timeout=30)
            subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin",
                            user], check=True, timeout=30)
        yield USERS
    finally:
        for user in USERS:
            subprocess.run(["userdel", user], capture_output=True, timeout=30)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder everyone can write to, with the sticky bit, as /tmp is."""
    path = Path(tempfile.mkdtemp(prefix="bbf-shared-", dir="/tmp"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home holding one deployment that has something to export and to report."""
    work = tmp_path_factory.mktemp("planted")
    home = work / "home"
    config = work / "cloud.yaml"
    config.write_text(yaml.safe_dump(CLOUD))
    created = run_cli(home, "deployment", "create", "--no-preflight", "--name", "bbf-cloud",
                      "--file", str(config))
    assert created.returncode == 0, created.stderr
    yield home
    run_cli(home, "deployment", "destroy", "--force", "bbf-cloud")


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file of root's that a planted link points at (as /etc/shadow would be)."""
    path = tmp_path / "victim"
    path.write_text(VICTIM_TEXT)
    path.chmod(0o644)
    return path


OUTPUTS = [("deployment", "export", "bbf-cloud", "--format", "openrc"),
           ("deployment", "report", "bbf-cloud")]


@pytest.mark.parametrize("command", OUTPUTS, ids=["export", "report"])
def test_a_planted_link_is_not_followed(command: tuple[str, ...], users: tuple[str, str],
                                        shared: Path, deployed: Path, victim: Path,
                                        tmp_path: Path) -> None:
    first, second = users
    absent = tmp_path / "created-through-the-link"
    as_user(first, "ln", "-s", str(victim), str(shared / "to-victim"))
    as_user(second, "ln", "-s", str(absent), str(shared / "dangling"))
    as_user(second, "ln", "-s", str(tmp_path), str(shared / "folder-link"))
    for name, message in (("to-victim", "is a symbolic link: not followed"),
                          ("dangling", "is a symbolic link: not followed"),
                          ("folder-link/out", f"is a symbolic link of user {second}")):
        result = run_cli(deployed, *command, "--output", str(shared / name))
        assert_one_clear_line(result, message)
    assert victim.read_text() == VICTIM_TEXT and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert not absent.exists() and not (tmp_path / "out").exists()
    assert sorted(entry.name for entry in shared.iterdir()) == ["dangling", "folder-link",
                                                                "to-victim"]


@pytest.mark.parametrize("command", OUTPUTS, ids=["export", "report"])
def test_a_file_another_user_made_first_is_not_written_into(
        command: tuple[str, ...], users: tuple[str, str], shared: Path, deployed: Path) -> None:
    first, second = users
    as_user(first, "touch", str(shared / "empty"))
    as_user(second, "sh", "-c", f"echo theirs > {shared / 'open'}; chmod 666 {shared / 'open'}")
    for name, owner in (("empty", first), ("open", second)):
        before = (shared / name).read_bytes()
        result = run_cli(deployed, *command, "--output", str(shared / name))
        assert_one_clear_line(result, f"belongs to user {owner}: not written into")
        assert (shared / name).read_bytes() == before
        assert (shared / name).stat().st_uid == uid_of(owner)
    assert sorted(entry.name for entry in shared.iterdir()) == ["empty", "open"]


def test_an_own_file_in_the_shared_folder_is_replaced_private(shared: Path, deployed: Path
                                                              ) -> None:
    target = shared / "openrc"
    target.write_text("old\n")
    target.chmod(0o666)
    old_inode = target.stat().st_ino
    result = run_cli(deployed, "deployment", "export", "bbf-cloud", "--format", "openrc",
                     "--output", str(target), umask=0)
    assert result.returncode == 0, result.stderr
    assert "Planted-Secret-26" in target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.stat().st_ino != old_inode
    assert [entry.name for entry in shared.iterdir()] == ["openrc"]


def test_folders_others_can_swap_files_in_are_refused(users: tuple[str, str], deployed: Path,
                                                      tmp_path: Path) -> None:
    first, _ = users
    open_folder = tmp_path / "open"
    open_folder.mkdir(mode=0o777)
    open_folder.chmod(0o777)  # writable by all, no sticky bit
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, uid_of(first), -1)
    for folder, message in ((open_folder, "can be written by others (mode 0777)"),
                            (theirs, f"belongs to user {first}, who could replace")):
        result = run_cli(deployed, "deployment", "export", "bbf-cloud", "--format", "openrc",
                         "--output", str(folder / "openrc"))
        assert_one_clear_line(result, message)
        assert list(folder.iterdir()) == []


def test_an_existing_home_is_used_only_if_private_and_own(users: tuple[str, str],
                                                           tmp_path: Path) -> None:
    first, second = users
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, uid_of(first), -1)
    open_home = tmp_path / "open"
    open_home.mkdir()
    open_home.chmod(0o777)
    group_home = tmp_path / "group"
    group_home.mkdir()
    group_home.chmod(0o770)
    shared_home = tmp_path / "shared"
    shared_home.mkdir()
    shared_home.chmod(0o1777)
    linked = tmp_path / "linked"
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    linked.symlink_to(mine)
    os.chown(linked, uid_of(second), -1, follow_symlinks=False)
    cases = [(theirs, f"belongs to user {first}, not to root"),
             (open_home, "can be written by others (mode 0777)"),
             (group_home, "can be written by others (mode 0770)"),
             (shared_home, "can be written by others (mode 1777)"),
             (linked, f"is a symbolic link of user {second}: not followed")]
    for home, message in cases:
        result = run_cli(home, "deployment", "list")
        assert_one_clear_line(result, "BENCHBED_HOME")
        assert message in result.stderr, result.stderr
    for home in (theirs, open_home, group_home, shared_home, mine):
        assert list(home.iterdir()) == []


def test_a_home_created_under_umask_000_holds_nothing_others_can_use(tmp_path: Path) -> None:
    """Every file benchbed writes under the home, through a real deployment with a key, a log,
    known_hosts, an sshd's files and the database, is 0600 and every folder 0700."""
    home = tmp_path / "a" / "b" / "home"
    config = tmp_path / "netns.yaml"
    config.write_text(yaml.safe_dump({"type": "ServersEngine", "provider": {
        "type": "NetnsProvider", "network": NETWORK, "amount": 1}}))
    try:
        for args in (("deployment", "create", "--name", "bbf-umask", "--file", str(config)),
                     ("deployment", "use", "bbf-umask"),
                     ("deployment", "export", "--format", "ssh-config"),
                     ("deployment", "check"),
                     ("deployment", "export", "--format", "ansible-inventory", "--output",
                      str(home / "inventory.yaml"))):
            result = run_cli(home, *args, umask=0)
            assert result.returncode == 0, f"{args}: {result.stderr}"
        found = [path for path in [home, *home.rglob("*")] if not path.is_socket()]
        assert any(path.name == "authorized_keys" for path in found)
        assert any(path.name == "known_hosts" for path in found)
        # the public host key and the pid file that ssh-keygen and sshd make themselves are
        # 0644, in a 0700 folder; nothing is writable by others anywhere
        public = {"ssh_host_ed25519_key.pub", "sshd.pid"}
        loose = {str(path): oct(stat.S_IMODE(path.lstat().st_mode)) for path in found
                 if path.lstat().st_mode & (0o022 if path.name in public else 0o077)}
        assert loose == {}
        assert {stat.S_IMODE(path.stat().st_mode) for path in found if path.is_dir()} == {0o700}
        for folder in (tmp_path / "a", tmp_path / "a" / "b"):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    finally:
        destroyed = run_cli(home, "deployment", "destroy", "--force", "bbf-umask")
    assert destroyed.returncode == 0, destroyed.stderr


def test_a_database_named_by_url_is_created_private(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    folder.mkdir(mode=0o700)
    database = folder / "bb.sqlite"
    for listed in range(2):
        result = run_cli(tmp_path / "home", "deployment", "list", umask=0,
                         env={"BENCHBED_DATABASE_URL": f"sqlite:///{database}"})
        assert result.returncode == 0, f"run {listed}: {result.stderr}"
    names = sorted(path.name for path in folder.iterdir())
    # the database, SQLite's two companions, and the (empty) lock migrations are made under
    assert names == ["bb.sqlite", "bb.sqlite-shm", "bb.sqlite-wal", "bb.sqlite.migrate-lock"]
    assert {oct(stat.S_IMODE(path.stat().st_mode)) for path in folder.iterdir()} == {"0o600"}


def test_a_planted_database_is_refused(users: tuple[str, str], shared: Path, victim: Path,
                                       tmp_path: Path) -> None:
    first, second = users
    as_user(first, "ln", "-s", str(victim), str(shared / "link.sqlite"))
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, uid_of(second), -1)
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    as_user(second, "ln", "-s", str(mine), str(shared / "folder-link"))
    planted_wal = tmp_path / "wal"
    planted_wal.mkdir(mode=0o700)
    (planted_wal / "bb.sqlite-wal").symlink_to(victim)
    cases = [(shared / "link.sqlite", "can be written by others (mode 1777)"),
             (shared / "new.sqlite", "can be written by others (mode 1777)"),
             (theirs / "bb.sqlite", f"belongs to user {second}, who could replace"),
             (shared / "folder-link" / "bb.sqlite", f"is a symbolic link of user {second}"),
             (planted_wal / "bb.sqlite", "bb.sqlite-wal is a symbolic link: not followed")]
    for database, message in cases:
        result = run_cli(tmp_path / "home", "deployment", "list",
                         env={"BENCHBED_DATABASE_URL": f"sqlite:///{database}"})
        assert_one_clear_line(result, message)
    assert victim.read_text() == VICTIM_TEXT
    assert list(theirs.iterdir()) == [] and list(mine.iterdir()) == []
    assert [entry.name for entry in planted_wal.iterdir()] == ["bb.sqlite-wal"]
    assert sorted(entry.name for entry in shared.iterdir()) == ["folder-link", "link.sqlite"]


def test_environment_errors_are_one_line_not_internal_errors(deployed: Path, tmp_path: Path
                                                             ) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for home, message in ((a_file, f"{a_file} is not a folder"),
                          (Path("/dev/null"), "/dev/null is not a folder"),
                          (a_file / "home", f"{a_file} is not a folder")):
        assert_one_clear_line(run_cli(home, "deployment", "list"), message)
    assert a_file.read_text() == ""
    # unwritable output folders: missing, not a folder, one the kernel refuses files in, and
    # a read-only file system (root's permissions override any mode)
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k,mode=0755", "bbf-ro",
                    str(read_only)], check=True, timeout=30)
    try:
        for target, message in ((tmp_path / "missing" / "openrc", "No such file or directory"),
                                (a_file / "openrc", "is not a folder"),
                                (Path("/proc/openrc"), "No such file or directory"),
                                (read_only / "openrc", "Read-only file system")):
            result = run_cli(deployed, "deployment", "export", "bbf-cloud", "--format",
                             "openrc", "--output", str(target))
            assert_one_clear_line(result, message)
            assert f"cannot write {target}" in result.stderr
            assert not target.exists()
    finally:
        subprocess.run(["umount", str(read_only)], check=True, timeout=30)
    for url, message in (("garbage", "BENCHBED_DATABASE_URL is not a database URL"),
                         ("postgresql://u:Url-Secret-26@h:notaport/db", "notaport"),
                         ("nosuch://x/y", "Can't load plugin"),
                         ("sqlite://", "in-memory SQLite database")):
        result = run_cli(deployed, "deployment", "list", env={"BENCHBED_DATABASE_URL": url})
        assert_one_clear_line(result, message)
        assert "Url-Secret-26" not in result.stderr
