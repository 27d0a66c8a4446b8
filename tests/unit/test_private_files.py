"""benchbed.private_files: the one writer of private files (runs as root; "another user" is a
uid no one has, given with chown)."""

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchbed import private_files
from benchbed.errors import BenchbedError, InputError

STRANGER = 64123  # a uid of no account: files chowned to it belong to "another user"


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_new_file_is_0600_whatever_the_umask(tmp_path: Path, umask_000: None) -> None:
    for name, content in (("text", "secret\n"), ("bytes", b"\x00\xff" * 70000)):
        private_files.write(tmp_path / name, content)
        assert mode(tmp_path / name) == 0o600
        expected = content.encode() if isinstance(content, str) else content
        assert (tmp_path / name).read_bytes() == expected
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bytes", "text"]


def test_an_own_file_is_replaced_whole_not_written_into(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_text("old content, longer than the new one\n")
    target.chmod(0o666)
    other_name = tmp_path / "hard-link"
    os.link(target, other_name)
    private_files.write(target, "new\n")
    assert target.read_text() == "new\n" and mode(target) == 0o600
    assert other_name.read_text() == "old content, longer than the new one\n"


@pytest.mark.parametrize("kind", ["link to a file", "dangling link", "own link"])
def test_a_link_at_the_name_is_refused(tmp_path: Path, kind: str) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    target = tmp_path / "out"
    target.symlink_to(victim if kind != "dangling link" else tmp_path / "absent")
    if kind != "own link":
        os.chown(target, STRANGER, -1, follow_symlinks=False)
    for writer in (lambda: private_files.write(target, "x"), lambda: private_files.ensure(target),
                   lambda: private_files.append(target, "x")):
        with pytest.raises(InputError, match="is a symbolic link: not followed"):
            writer()
    assert victim.read_text() == "keep\n" and not (tmp_path / "absent").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out", "victim"]


def test_a_file_of_another_user_or_a_special_file_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.write_text("theirs\n")
    os.chown(theirs, STRANGER, -1)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    for target, message in ((theirs, f"belongs to user uid {STRANGER}: not written into"),
                            (fifo, "is not a regular file"), (folder, "is not a regular file")):
        with pytest.raises(InputError, match=message):
            private_files.write(target, "x")
    assert theirs.read_text() == "theirs\n" and theirs.stat().st_uid == STRANGER
    with pytest.raises(InputError, match=f"belongs to user uid {STRANGER}"):
        private_files.ensure(theirs)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["fifo", "folder", "theirs"]


def test_folders_others_can_swap_a_file_in_are_refused(tmp_path: Path) -> None:
    group = tmp_path / "group"
    group.mkdir()
    group.chmod(0o770)
    everyone = tmp_path / "everyone"
    everyone.mkdir()
    everyone.chmod(0o777)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, STRANGER, -1)
    for folder, message in ((group, "can be written by others"),
                            (everyone, "can be written by others"),
                            (theirs, f"belongs to user uid {STRANGER}, who could replace")):
        with pytest.raises(InputError, match=message):
            private_files.write(folder / "out", "x")
        assert list(folder.iterdir()) == []
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    private_files.write(sticky / "out", "x")
    assert mode(sticky / "out") == 0o600


def test_only_links_of_this_user_or_root_are_followed_on_the_way(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    own = tmp_path / "own"
    own.symlink_to(real)
    relative = tmp_path / "relative"
    relative.symlink_to("real/../real")
    private_files.write(own / "a", "a")
    private_files.write(relative / "b", "b")
    assert sorted(path.name for path in real.iterdir()) == ["a", "b"]
    for name, target in (("foreign", str(real)), ("foreign-relative", "real")):
        link = tmp_path / name
        link.symlink_to(target)
        os.chown(link, STRANGER, -1, follow_symlinks=False)
        with pytest.raises(InputError, match=f"{name} is a symbolic link of user uid "
                                             f"{STRANGER}: not followed"):
            private_files.write(link / "c", "c")
    # a foreign link deeper in an own link's target is refused too
    (tmp_path / "via-own").symlink_to(tmp_path / "foreign")
    with pytest.raises(InputError, match="foreign is a symbolic link of user"):
        private_files.write(tmp_path / "via-own" / "d", "d")
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    with pytest.raises(InputError, match="too many symbolic links"):
        private_files.write(loop / "e", "e")
    assert sorted(path.name for path in real.iterdir()) == ["a", "b"]


def test_private_folders_are_0700_and_an_existing_one_must_be_own_and_closed(
        tmp_path: Path, umask_000: None) -> None:
    home = tmp_path / "x" / "y" / "home"
    private_files.make_private_folder(home)
    assert [mode(path) for path in (tmp_path / "x", tmp_path / "x" / "y", home)] == [0o700] * 3
    private_files.make_private_folder(home)  # an own private folder is used as it is
    open_home = tmp_path / "open"
    open_home.mkdir()
    open_home.chmod(0o755 | stat.S_IWGRP)
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, STRANGER, -1)
    a_file = tmp_path / "file"
    a_file.write_text("")
    for folder, message in ((open_home, "can be written by others"),
                            (theirs, f"belongs to user uid {STRANGER}, not to"),
                            (a_file, "is not a folder"), (a_file / "below", "is not a folder")):
        with pytest.raises(InputError, match=message):
            private_files.make_private_folder(folder)
    assert list(open_home.iterdir()) == [] and list(theirs.iterdir()) == []


def test_a_folder_planted_where_a_private_one_is_made_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    planted = shared / "home"
    planted.mkdir(mode=0o700)
    os.chown(planted, STRANGER, -1)
    with pytest.raises(InputError, match=f"belongs to user uid {STRANGER}"):
        private_files.make_private_folder(planted / "inner")
    assert list(planted.iterdir()) == []


def test_a_database_is_made_private_before_sqlite_opens_it(tmp_path: Path,
                                                          umask_000: None) -> None:
    import sqlite3

    folder = tmp_path / "db"
    folder.mkdir(mode=0o700)
    database = folder / "bb.sqlite"
    private_files.database(database)
    assert mode(database) == 0o600
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE t (x)")
        assert {path.name: mode(path) for path in folder.iterdir()} == {
            "bb.sqlite": 0o600, "bb.sqlite-wal": 0o600, "bb.sqlite-shm": 0o600}
    database.chmod(0o644)
    private_files.database(database)  # an own database left open by an older version
    assert mode(database) == 0o600


def test_a_database_in_a_shared_folder_or_with_planted_companions_is_refused(
        tmp_path: Path) -> None:
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    with pytest.raises(InputError, match="can be written by others"):
        private_files.database(sticky / "bb.sqlite")
    folder = tmp_path / "db"
    folder.mkdir(mode=0o700)
    (folder / "bb.sqlite-wal").symlink_to(tmp_path / "victim")
    (folder / "bb.sqlite-shm").write_text("")
    os.chown(folder / "bb.sqlite-shm", STRANGER, -1)
    with pytest.raises(InputError, match=r"bb\.sqlite-wal is a symbolic link"):
        private_files.database(folder / "bb.sqlite")
    (folder / "bb.sqlite-wal").unlink()
    with pytest.raises(InputError, match=rf"bb\.sqlite-shm exists and belongs to user uid "
                                         f"{STRANGER}"):
        private_files.database(folder / "bb.sqlite")
    assert sorted(path.name for path in folder.iterdir()) == ["bb.sqlite-shm"]
    assert list(sticky.iterdir()) == [] and not (tmp_path / "victim").exists()


def test_a_failing_disk_is_a_fault_of_the_world_and_a_bad_path_is_bad_input() -> None:
    full = private_files.os_error("/x", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    assert type(full) is BenchbedError and full.exit_code == 1
    assert str(full) == "cannot write /x: No space left on device"
    for code in (errno.EACCES, errno.EROFS, errno.ENOENT, errno.ENOTDIR):
        refused = private_files.os_error("/x", OSError(code, os.strerror(code)))
        assert isinstance(refused, InputError) and refused.exit_code == 2


def test_appending_keeps_the_file_private(tmp_path: Path, umask_000: None) -> None:
    target = tmp_path / "passes"
    private_files.append(target, "a\n")
    private_files.append(target, "b\n")
    assert target.read_text() == "a\nb\n" and mode(target) == 0o600
