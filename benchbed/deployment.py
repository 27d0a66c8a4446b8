"""The Deployment entity: status machine with compare-and-set, lease, timeline and log."""

import contextvars
import logging
import re
import shutil
import sys
import time
import uuid as uuid_lib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchbed import lease, masking, paths, private_files
from benchbed.db.sql import IntegrityViolation, Record, transaction, utcnow
from benchbed.errors import BusyError, InputError, NotFoundError, StatusError
from benchbed.lease import Holder
from benchbed.terminal import safe

if TYPE_CHECKING:
    from benchbed.ledger import Ledger, Resource

DEPLOYMENT_COLUMNS = ("uuid", "name", "config", "status", "endpoints", "parent_uuid",
                      "created_at", "updated_at", "lease_owner", "lease_since", "error")


class Status(StrEnum):
    INIT = "deploy->init"
    STARTED = "deploy->started"
    SUBDEPLOY = "deploy->subdeploy"
    FINISHED = "deploy->finished"
    FAILED = "deploy->failed"
    INCONSISTENT = "deploy->inconsistent"
    CLEANUP_STARTED = "cleanup->started"
    CLEANUP_FINISHED = "cleanup->finished"
    CLEANUP_FAILED = "cleanup->failed"


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.INIT: frozenset({Status.STARTED, Status.FAILED, Status.INCONSISTENT}),
    Status.STARTED: frozenset(
        {Status.SUBDEPLOY, Status.FINISHED, Status.FAILED, Status.INCONSISTENT}
    ),
    Status.SUBDEPLOY: frozenset({Status.FINISHED, Status.FAILED, Status.INCONSISTENT}),
    Status.FINISHED: frozenset({Status.CLEANUP_STARTED}),
    Status.FAILED: frozenset({Status.CLEANUP_STARTED}),
    Status.INCONSISTENT: frozenset({Status.CLEANUP_STARTED}),
    Status.CLEANUP_STARTED: frozenset({Status.CLEANUP_FINISHED, Status.CLEANUP_FAILED}),
    Status.CLEANUP_FAILED: frozenset({Status.CLEANUP_STARTED}),
    Status.CLEANUP_FINISHED: frozenset({Status.STARTED}),
}

# A process that died while holding the lease left the deployment in one of these.
IN_PROGRESS = frozenset({Status.INIT, Status.STARTED, Status.SUBDEPLOY, Status.CLEANUP_STARTED})

# The step this thread of work is inside, as (step id, lane): a new step is recorded as its
# child and in its lane unless it names one. A context variable rather than a thread-local,
# so that run_parallel's workers (which run in a copy of the caller's context) inherit it.
_current_step: contextvars.ContextVar[tuple[int, str | None] | None] = \
    contextvars.ContextVar("benchbed_current_step", default=None)


def _show_step(name: str, detail: str | None, outcome: str, seconds: float = 0.0,
               top_level: bool = False) -> None:
    """On a terminal: the running step on one line that the next one overwrites; only failed
    and top-level steps stay, so that a deployment of many steps prints a few lines."""
    if not sys.stderr.isatty():
        return
    text = safe(f"{name}{f' ({detail})' if detail else ''}")
    if outcome == "running":
        width = shutil.get_terminal_size().columns - 1
        sys.stderr.write(f"\r\033[K{f'  ...    {text}'[:width]}")
    elif outcome == "failed" or top_level:
        mark = "done" if outcome == "ok" else "FAILED"
        sys.stderr.write(f"\r\033[K  {mark:<6} {text} {seconds:.1f}s\n")
    sys.stderr.flush()


# Names end up in file names, exported files and shell commands: a conservative alphabet.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def is_uuid(text: str) -> bool:
    """True for anything Python reads as a UUID: such names would shadow uuid lookups."""
    try:
        uuid_lib.UUID(text)
    except ValueError:
        return False
    return True


def validate_name(name: str) -> None:
    """Refuse a deployment name outside NAME_PATTERN, or shaped like a uuid."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InputError(f"deployment name {name!r} is invalid: 1 to 63 letters, digits, "
                         f"'.', '_' or '-', starting with a letter or digit")
    if is_uuid(name):
        raise InputError(f"deployment name '{name}' is shaped like a uuid; uuids are looked "
                         f"up as uuids, so choose another name")


class Deployment:
    """One system under test, as persisted; every status change is compare-and-set."""

    def __init__(self, row: Mapping[str, Any]) -> None:
        self._load(row)
        self._holder: Holder | None = None

    def _load(self, row: Mapping[str, Any]) -> None:
        self.uuid: str = row["uuid"]
        self.name: str = row["name"]
        self.config: dict[str, Any] = row["config"]
        self.status = Status(row["status"])
        self.endpoints: dict[str, Any] = row["endpoints"] or {}
        self.parent_uuid = row["parent_uuid"]
        self.created_at: datetime = row["created_at"]
        self.updated_at: datetime = row["updated_at"]
        self.lease_owner = row["lease_owner"]
        self.lease_since = row["lease_since"]
        self.error = row["error"]
        masking.register_from(self.config)
        masking.register_from(self.endpoints)

    @classmethod
    def create(cls, name: str, config: dict[str, Any], parent_uuid: str | None = None
               ) -> "Deployment":
        """Insert the row in deploy->init, already leased to this process."""
        validate_name(name)
        holder = Holder.me()
        now = utcnow()
        values = dict(
            uuid=str(uuid_lib.uuid4()), name=name, config=config, status=Status.INIT.value,
            parent_uuid=parent_uuid, created_at=now, updated_at=now,
            lease_owner=holder.token(), lease_since=now, endpoints=None, error=None,
        )
        try:
            with transaction() as db:
                db.execute(f"INSERT INTO deployments ({', '.join(DEPLOYMENT_COLUMNS)}) "
                           f"VALUES ({', '.join(':' + c for c in DEPLOYMENT_COLUMNS)})",
                           **values)
        except IntegrityViolation:
            raise InputError(f"a deployment named '{name}' already exists") from None
        deployment = cls(values)
        deployment._holder = holder
        lease.mark_commands(holder)
        return deployment

    @classmethod
    def get(cls, name_or_uuid: str) -> "Deployment":
        """A uuid-shaped argument is looked up as a uuid, anything else as a name."""
        if is_uuid(name_or_uuid):
            key, column = str(uuid_lib.UUID(name_or_uuid)), "uuid"
            missing = f"no deployment with uuid '{key}'"
        else:
            key, column = name_or_uuid, "name"
            missing = f"no deployment named {name_or_uuid!r}"
        with transaction() as db:
            row = db.first(f"SELECT * FROM deployments WHERE {column} = :key", key=key)
        if row is None:
            raise NotFoundError(missing)
        return cls(row)

    @classmethod
    def uuids(cls) -> set[str]:
        """Every deployment this database records, whatever its status."""
        with transaction() as db:
            return {row.uuid for row in db.execute("SELECT uuid FROM deployments")}

    @staticmethod
    def list_rows() -> list[dict[str, Any]]:
        """uuid, name, status, created_at and parent_uuid of every deployment, oldest first."""
        from benchbed.db.fastread import LIST_COLUMNS

        with transaction() as db:
            return [dict(row) for row in db.execute(
                f"SELECT {', '.join(LIST_COLUMNS)} FROM deployments ORDER BY created_at")]

    def refresh(self) -> None:
        with transaction() as db:
            row = db.first("SELECT * FROM deployments WHERE uuid = :uuid", uuid=self.uuid)
        if row is None:
            raise NotFoundError(f"deployment '{self.name}' no longer exists")
        self._load(row)

    @property
    def directory(self) -> Path:
        return paths.deployment_dir(self.uuid)

    # -- lease -------------------------------------------------------------------------------

    @contextmanager
    def lease(self, force: bool = False) -> Iterator["Deployment"]:
        """Hold the deployment for one action; a second actor gets BusyError naming us."""
        if self._holder is None:
            self._acquire(force)
        try:
            yield self
        finally:
            self.release()

    def _acquire(self, force: bool) -> None:
        holder = Holder.me()
        now = utcnow()
        with transaction() as db:
            taken = db.count("UPDATE deployments SET lease_owner = :owner, lease_since = :now "
                             "WHERE uuid = :uuid AND lease_owner IS NULL",
                             owner=holder.token(), now=now, uuid=self.uuid)
        if not taken:
            self.refresh()
            if self.lease_owner is None:
                return self._acquire(force)
            other = Holder.parse(self.lease_owner)
            since = (f"{self.lease_since:%Y-%m-%d %H:%M:%S} UTC"
                     if isinstance(self.lease_since, datetime) else "an unknown time")
            alive = other.is_alive()
            if alive:
                raise BusyError(f"deployment '{self.name}' is busy: held by "
                                f"{other.describe()} since {since}")
            if not force:
                state = "is no longer running" if alive is False else "cannot be checked"
                raise BusyError(f"deployment '{self.name}' is held by {other.describe()} since "
                                f"{since}, which {state}; re-run with --force to break the lease")
            with transaction() as db:
                taken = db.count("UPDATE deployments SET lease_owner = :owner, "
                                 "lease_since = :now WHERE uuid = :uuid AND lease_owner = :old",
                                 owner=holder.token(), now=now, uuid=self.uuid,
                                 old=self.lease_owner)
            if not taken:
                raise BusyError(f"deployment '{self.name}' was taken by another process")
            self.logger.warning("broke the lease of %s", other.describe())
            sys.stderr.write(f"broke the lease of deployment '{self.name}' held by "
                             f"{other.describe()}\n")
            if alive is False:
                ended = lease.end_leftover_commands(other)
                if ended:
                    self.logger.warning("ended %d command(s) %s left running: pids %s",
                                        len(ended), other.describe(),
                                        " ".join(map(str, ended)))
        self._holder = holder
        lease.mark_commands(holder)
        self.refresh()
        if self.status in IN_PROGRESS:
            self.set_status(Status.INCONSISTENT if self.status != Status.CLEANUP_STARTED
                            else Status.CLEANUP_FAILED)

    def release(self) -> None:
        if self._holder is None:
            return
        with transaction() as db:
            db.count("UPDATE deployments SET lease_owner = NULL, lease_since = NULL "
                     "WHERE uuid = :uuid AND lease_owner = :owner",
                     uuid=self.uuid, owner=self._holder.token())
        self._holder = None

    # -- status ------------------------------------------------------------------------------

    def set_status(self, new: Status, error: str | None = None) -> None:
        """Compare-and-set from the status we last saw, only while we hold the lease."""
        if new not in TRANSITIONS[self.status]:
            raise StatusError(f"deployment '{self.name}' is {self.status}; "
                              f"it cannot go to {new}")
        if self._holder is None:
            raise StatusError(f"deployment '{self.name}' changed status without holding it")
        with transaction() as db:
            changed = db.count(
                "UPDATE deployments SET status = :new, updated_at = :now, error = :error "
                "WHERE uuid = :uuid AND status = :old AND lease_owner = :owner",
                new=new.value, now=utcnow(), error=masking.scrub(error) if error else None,
                uuid=self.uuid, old=self.status.value, owner=self._holder.token())
        if not changed:
            self.refresh()
            raise BusyError(f"deployment '{self.name}' changed under us: now {self.status}, "
                            f"held by {self.lease_owner or 'nobody'}")
        self.logger.info("status %s -> %s", self.status, new)
        self.status = new
        self.error = error

    def require_status(self, *allowed: Status, action: str) -> None:
        if self.status not in allowed:
            raise StatusError(f"cannot {action} deployment '{self.name}': it is {self.status}"
                              f" (needs {' or '.join(allowed)})")

    def set_endpoints(self, endpoints: dict[str, Any]) -> None:
        masking.register_from(endpoints)
        with transaction() as db:
            db.count("UPDATE deployments SET endpoints = :endpoints, updated_at = :now "
                     "WHERE uuid = :uuid", endpoints=endpoints, now=utcnow(), uuid=self.uuid)
        self.endpoints = endpoints

    def all_resources(self) -> list["Resource"]:
        """Every ledger row of this deployment, whatever plugin recorded it, oldest first."""
        from benchbed.ledger import Resource

        with transaction() as db:
            rows = db.execute("SELECT * FROM resources WHERE deployment_uuid = :uuid "
                              "ORDER BY id", uuid=self.uuid)
        return [Resource(r.id, r.scope, r.kind, r.name, r.state, dict(r.data)) for r in rows]

    def remaining_resources(self) -> int:
        with transaction() as db:
            return db.execute("SELECT count(*) AS remaining FROM resources "
                              "WHERE deployment_uuid = :uuid", uuid=self.uuid)[0].remaining

    def delete(self) -> None:
        """Remove the record once everything it owned is gone, and then its folder.

        Refused while any ledger row (of any nested plugin) or child deployment is left:
        the database enforces it too, since nothing cascades. The folder holds the
        deployment's private SSH key, known hosts and log: nothing of it may stay on disk.
        The log is closed first so no late record recreates it.
        """
        left = self.remaining_resources()
        if left:
            raise StatusError(f"deployment '{self.name}' still has {left} resource(s) in "
                              f"its ledger; destroy it again")
        with transaction() as db:
            for table in ("timeline", "host_keys"):
                db.count(f"DELETE FROM {table} WHERE deployment_uuid = :uuid", uuid=self.uuid)
            db.count("DELETE FROM deployments WHERE uuid = :uuid", uuid=self.uuid)
        self._holder = None
        logger = logging.getLogger(f"benchbed.deployment.{self.uuid}")
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        folder = paths.deployment_dir(self.uuid, create=False)
        if folder.exists():
            shutil.rmtree(folder)

    # -- timeline and log ----------------------------------------------------------------------

    @contextmanager
    def step(self, name: str, detail: str | None = None, lane: str | None = None
             ) -> Iterator[None]:
        """Record one step with its start and end, so `show` can say where the time went.

        The step is recorded as a child of the step it runs in; `lane` names the server or
        node it works on (by default its parent's), so a report can draw one lane each.
        """
        parent = _current_step.get()
        lane = lane if lane is not None else parent[1] if parent else None
        with transaction() as db:
            step_id = db.execute(
                "INSERT INTO timeline (deployment_uuid, step, detail, started_at, outcome, "
                "parent_id, lane) VALUES (:uuid, :step, :detail, :now, 'running', :parent, "
                ":lane) RETURNING id", uuid=self.uuid, step=name, detail=detail, now=utcnow(),
                parent=parent[0] if parent else None, lane=lane)[0].id
        self.logger.info("step started: %s%s", name, f" ({detail})" if detail else "")
        _show_step(name, detail, "running")
        started = time.monotonic()
        outcome = "failed"
        token = _current_step.set((step_id, lane))
        try:
            yield
            outcome = "ok"
        finally:
            _current_step.reset(token)
            with transaction() as db:
                db.count("UPDATE timeline SET finished_at = :now, outcome = :outcome "
                         "WHERE id = :id", now=utcnow(), outcome=outcome, id=step_id)
            self.logger.info("step %s: %s", outcome, name)
            _show_step(name, detail, outcome, time.monotonic() - started, parent is None)

    def timeline(self) -> list[Record]:
        """The recorded steps, oldest first (rows with step, detail, lane, parent_id, ...)."""
        with transaction() as db:
            return db.execute("SELECT * FROM timeline WHERE deployment_uuid = :uuid "
                              "ORDER BY id", uuid=self.uuid)

    @property
    def log_path(self) -> Path:
        return self.directory / "deployment.log"

    @property
    def logger(self) -> logging.Logger:
        """Per-deployment logger writing to its log file, with secrets scrubbed."""
        logger = logging.getLogger(f"benchbed.deployment.{self.uuid}")
        if not logger.handlers:
            private_files.ensure(self.log_path)
            handler = logging.FileHandler(self.log_path)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            handler.addFilter(masking.ScrubFilter())
            logger.addHandler(handler)
            logger.setLevel(logging.DEBUG)
            logger.propagate = False
        return logger

    def ledger(self, scope: str) -> "Ledger":
        from benchbed.ledger import Ledger

        return Ledger(self, scope)
