"""The one way benchbed writes a file that may hold secrets, and opens a folder it keeps them in.

benchbed often runs as root and writes where a user names (`--output /tmp/x`), so another
user may have planted something there first. The rules (docs/guarantees.md, "Files another
user can plant"):

* a path is resolved one component at a time, and a symbolic link on the way is followed
  only if it belongs to this user or to root; the file's own name is never followed;
* the folder written into must belong to this user or to root, and a folder that others
  can write must have the sticky bit (else they could swap the file after it is written);
* an existing file is replaced only if it is a regular file of this user, and never
  written into: the content goes to a new file (mode 0600 from its creation, whatever the
  umask), which then takes the name in one rename;
* a refusal or an unusable path is bad input (exit 2); a full or failing disk is a fault
  of the world (exit 1).
"""

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from benchbed.errors import BenchbedError, InputError

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700
MAX_LINKS = 40  # as the kernel's own limit on links followed in one lookup
FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# faults of the disk, not of the path the user gave
WORLD_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})


def os_error(path: str | Path, error: OSError, verb: str = "write") -> BenchbedError:
    """One line for a failed file operation: exit 1 for a failing disk, else exit 2."""
    reason = error.strerror or type(error).__name__
    text = f"cannot {verb} {path}: {reason}" if verb else f"{path}: {reason}"
    return BenchbedError(text) if error.errno in WORLD_ERRNOS else InputError(text)


def _owner_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _trusted(uid: int) -> bool:
    return uid in (os.geteuid(), 0)


@contextmanager
def folder(path: str | Path, *, own: bool = False, shared: bool = True) -> Iterator[int]:
    """A descriptor of the folder `path`, reached without following another user's links.

    Every later operation goes through the descriptor, so a folder renamed or replaced by a
    link after this check is not written into. The folder must belong to this user (`own`)
    or else to this user or root; others may write to it only if `shared` and it has the
    sticky bit.
    """
    fd = _open_folder(os.fspath(path), own, shared)
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def _folder_of(target: Path, shared: bool = True) -> Iterator[int]:
    """The folder `target` goes in; a refusal names the file that was to be written."""
    try:
        fd = _open_folder(os.fspath(target.parent), own=False, shared=shared)
    except BenchbedError as error:
        raise type(error)(f"cannot write {target}: {error}") from None
    try:
        yield fd
    finally:
        os.close(fd)


def _open_folder(text: str, own: bool, shared: bool) -> int:
    fd = os.open("/" if text.startswith("/") else ".", FOLDER_FLAGS)
    try:
        pending = [part for part in text.split("/") if part not in ("", ".")]
        links = 0
        where = "/" if text.startswith("/") else ""  # the folder fd is, for messages
        while pending:
            name = pending.pop(0)
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            shown = os.path.join(where, name)
            subject = text if shown.rstrip("/") == text.rstrip("/") else f"{text}: {shown}"
            if stat.S_ISLNK(info.st_mode):
                if not _trusted(info.st_uid):
                    raise InputError(f"{subject} is a symbolic link of user "
                                     f"{_owner_name(info.st_uid)}: not followed")
                links += 1
                if links > MAX_LINKS:
                    raise InputError(f"{text}: too many symbolic links")
                target = os.readlink(name, dir_fd=fd)
                if target.startswith("/"):
                    os.close(fd)
                    fd = os.open("/", FOLDER_FLAGS)
                    where = "/"
                pending[:0] = [part for part in target.split("/") if part not in ("", ".")]
                continue
            if not stat.S_ISDIR(info.st_mode):
                raise InputError(f"{subject} is not a folder")
            inner = os.open(name, FOLDER_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
            where = shown
        _check_folder(text, os.fstat(fd), own, shared)
    except BaseException as error:
        os.close(fd)
        if isinstance(error, OSError):
            raise os_error(text, error, "") from None
        raise
    return fd


def _check_folder(text: str, info: os.stat_result, own: bool, shared: bool) -> None:
    owner = info.st_uid
    if own and owner != os.geteuid():
        raise InputError(f"{text} belongs to user {_owner_name(owner)}, not to "
                         f"{_owner_name(os.geteuid())}: refused")
    if not _trusted(owner):
        raise InputError(f"folder {text} belongs to user {_owner_name(owner)}, who could "
                         "replace what is written there: refused")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not (shared
                                                              and info.st_mode & stat.S_ISVTX):
        raise InputError(f"folder {text} can be written by others (mode "
                         f"{stat.S_IMODE(info.st_mode):04o}): refused")


def _check_existing(path: Path, folder_fd: int) -> bool:
    """Whether `path` exists; refused unless it is a regular file of this user."""
    try:
        info = os.stat(path.name, dir_fd=folder_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode):
        raise InputError(f"{path} is a symbolic link: not followed, nothing written")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path} exists and is not a regular file: nothing written")
    if info.st_uid != os.geteuid():
        raise InputError(f"{path} exists and belongs to user {_owner_name(info.st_uid)}: "
                         "not written into")
    return True


def _split(path: str | Path) -> Path:
    target = Path(path)
    if target.name in ("", ".", ".."):
        raise InputError(f"{path}: not a file name")
    return target


def write(path: str | Path, content: str | bytes) -> None:
    """Write `content` to `path`, mode 0600, replacing an own file whole (readers see the old
    content or the new one, never a part).

    A link, a foreign or special file at `path`, or a folder others could swap it in, is
    refused with one line (InputError) and nothing is written.
    """
    target = _split(path)
    data = content.encode() if isinstance(content, str) else content
    with _folder_of(target) as folder_fd:
        existed = _check_existing(target, folder_fd)
        temporary = f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, PRIVATE_FILE, dir_fd=folder_fd)
            try:
                os.fchmod(fd, PRIVATE_FILE)  # the umask may only have narrowed it
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            if existed:
                # checked again just before: only an own regular file is ever replaced
                _check_existing(target, folder_fd)
                os.replace(temporary, target.name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
            else:
                # a link fails if the name appeared since: nothing planted is replaced
                try:
                    os.link(temporary, target.name, src_dir_fd=folder_fd,
                            dst_dir_fd=folder_fd, follow_symlinks=False)
                except FileExistsError:
                    _check_existing(target, folder_fd)
                    os.replace(temporary, target.name, src_dir_fd=folder_fd,
                               dst_dir_fd=folder_fd)
                else:
                    os.unlink(temporary, dir_fd=folder_fd)
        except OSError as error:
            raise os_error(target, error) from None
        finally:
            with suppress(OSError):  # renamed into place, or never created
                os.unlink(temporary, dir_fd=folder_fd)


def ensure(path: str | Path) -> None:
    """Make sure `path` is a regular file of this user, mode 0600: created empty if missing.

    For files that others then open by name (SQLite, a log handler): an existing file is kept
    as it is but for its mode.
    """
    target = _split(path)
    with _folder_of(target) as folder_fd:
        _ensure_in(target, folder_fd)


def _ensure_in(target: Path, folder_fd: int) -> None:
    try:
        fd = os.open(target.name, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
                     | os.O_NONBLOCK, PRIVATE_FILE, dir_fd=folder_fd)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise InputError(f"{target} is a symbolic link: not followed") from None
        raise os_error(target, error) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{target} exists and is not a regular file: refused")
        if info.st_uid != os.geteuid():
            raise InputError(f"{target} belongs to user {_owner_name(info.st_uid)}: refused")
        if stat.S_IMODE(info.st_mode) != PRIVATE_FILE:
            os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)


def append(path: str | Path, content: str | bytes) -> None:
    """Append to a private file (created 0600 if missing), never through a link."""
    target = _split(path)
    data = content.encode() if isinstance(content, str) else content
    with _folder_of(target) as folder_fd:
        _ensure_in(target, folder_fd)
        try:
            fd = os.open(target.name, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW
                         | os.O_CLOEXEC, dir_fd=folder_fd)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as error:
            raise os_error(target, error) from None


def make_private_folder(path: str | Path) -> None:
    """Create `path` and its missing parents mode 0700 whatever the umask, each made inside
    the descriptor of the one before; an existing one must belong to this user and be
    writable by no one else."""
    target = Path(path)
    missing: list[str] = []
    probe = target
    while not os.path.lexists(probe) and probe != probe.parent:
        missing.insert(0, probe.name)
        probe = probe.parent
    if not missing:
        with folder(target, own=True, shared=False):
            return
    with folder(probe) as fd:
        parent = os.dup(fd)
    current = probe
    try:
        for name in missing:
            current = current / name
            try:
                os.mkdir(name, PRIVATE_FOLDER, dir_fd=parent)
                made = True
            except FileExistsError:
                made = False  # made meanwhile, by this user or another: judged below
            inner = os.open(name, FOLDER_FLAGS | os.O_NOFOLLOW, dir_fd=parent)
            os.close(parent)
            parent = inner
            if made:
                os.fchmod(parent, PRIVATE_FOLDER)  # the umask may only have narrowed it
            _check_folder(str(current), os.fstat(parent), own=True, shared=False)
    except OSError as error:
        raise os_error(target, error, "create") from None
    finally:
        os.close(parent)


def database(path: str | Path) -> None:
    """Make a SQLite database file private before SQLite opens it.

    SQLite opens the file and creates its -wal, -shm and -journal files beside it by name,
    following links, with the database file's own mode: so the file is created 0600 here, its
    folder must be one no one else can write to (a sticky shared folder such as /tmp is
    refused), and companions already there must be regular files of this user.
    """
    target = _split(path)
    with _folder_of(target, shared=False) as folder_fd:
        for suffix in ("-wal", "-shm", "-journal"):
            _check_existing(target.with_name(target.name + suffix), folder_fd)
        _ensure_in(target, folder_fd)
