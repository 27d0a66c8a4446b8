"""SQLAlchemy models: deployments, their resource ledger, timeline and recorded host keys."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class DeploymentRow(Base):
    __tablename__ = "deployments"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    status: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    endpoints: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    parent_uuid: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("deployments.uuid", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_since: Mapped[datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(Text)


class ResourceRow(Base):
    """One ledger row: written before the resource is created, deleted once it is gone."""

    __tablename__ = "resources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_uuid: Mapped[str] = mapped_column(
        String(36), ForeignKey("deployments.uuid", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(String(255), nullable=False)
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)


class TimelineRow(Base):
    __tablename__ = "timeline"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_uuid: Mapped[str] = mapped_column(
        String(36), ForeignKey("deployments.uuid", ondelete="CASCADE"), index=True
    )
    step: Mapped[str] = mapped_column(String(255), nullable=False)
    detail: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False, default="running")


class HostKeyRow(Base):
    """Host key recorded on first contact (trust on first use)."""

    __tablename__ = "host_keys"

    deployment_uuid: Mapped[str] = mapped_column(
        String(36), ForeignKey("deployments.uuid", ondelete="CASCADE"), primary_key=True
    )
    address: Mapped[str] = mapped_column(String(255), primary_key=True)
    key_type: Mapped[str] = mapped_column(String(64), nullable=False)
    key_base64: Mapped[str] = mapped_column(Text, nullable=False)
