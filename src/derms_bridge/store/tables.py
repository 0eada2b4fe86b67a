"""The tables that make every message durable and traceable."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class InstanceRow(Base):
    """One message received by a flow: what came, what was answered, how it ended."""

    __tablename__ = "instances"
    __table_args__ = (
        # The purge's search for what expired, flow by flow and outcome by outcome...
        Index("ix_instances_flow_status_finished", "flow", "status", "finished_at"),
        # ...and for payloads still kept, which past a week are few among many instances.
        Index(
            "ix_instances_payload_kept",
            "flow",
            "status",
            "finished_at",
            sqlite_where=text("payload_purged_at IS NULL"),
            postgresql_where=text("payload_purged_at IS NULL"),
        ),
        # The dashboard's counts of a window, read from the index alone...
        Index("ix_instances_received_flow_status", "received_at", "flow", "status"),
        # ...a flow's instances newest first, with or without a status...
        Index("ix_instances_flow_received_status", "flow", "received_at", "status"),
        # ...and the failed ones of a window (failing now, bulk resubmit's selection).
        Index("ix_instances_status_received", "status", "received_at"),
        # Bulk resubmit's selection of a flow over all time, from this index alone: the
        # failures it could send again, a few percent of the instances.
        Index(
            "ix_instances_failed_kept",
            "flow",
            "received_at",
            "id",
            sqlite_where=text("status = 'failed' AND payload_purged_at IS NULL"),
            postgresql_where=text("status = 'failed' AND payload_purged_at IS NULL"),
        ),
        # Nearly every instance names none: indexing the few that do keeps the index small
        # and tells SQLite's planner, once it has statistics, that a lookup finds few.
        Index(
            "ix_instances_resubmit_of_set",
            "resubmit_of",
            sqlite_where=text("resubmit_of IS NOT NULL"),
            postgresql_where=text("resubmit_of IS NOT NULL"),
        ),
        Index(
            "ix_instances_parent_id_set",
            "parent_id",
            sqlite_where=text("parent_id IS NOT NULL"),
            postgresql_where=text("parent_id IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    flow: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    caller: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[Any] = mapped_column(JSON)
    reply: Mapped[Any | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    #: Why the reference leaves this message alone (status skipped); not an error.
    skipped_reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    # No foreign key names instances on PostgreSQL (migration 0020): the purge checks, per
    # batch, what their checks did per deleted instance. SQLite files keep theirs.
    resubmit_of: Mapped[str | None] = mapped_column(String(36))
    parent_id: Mapped[str | None] = mapped_column(String(36))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The hub process running it from start to end (a HubProcessRow's name); None when
    #: workers take it up under leases of their own (the file flows, flow 15).
    runner: Mapped[str | None] = mapped_column(String(80))
    #: When the purge removed its payload, reply and file rows (retention); None: kept.
    payload_purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Its trace (W3C trace id, 32 hex digits) and the span of the instance in it (16), that
    #: work done later (a file's segments and acknowledgement) hangs under; None untraced.
    trace_id: Mapped[str | None] = mapped_column(String(32), index=True)
    trace_span_id: Mapped[str | None] = mapped_column(String(16))


class InstanceHourCountRow(Base):
    """How many of a flow's instances received in a clock hour (UTC) stand at a status,
    kept by triggers on `instances` (migration 0019) for every path that inserts, changes
    or deletes one; no row for a count of 0. On PostgreSQL the changes in
    `instance_count_changes` not folded in yet are to be added."""

    __tablename__ = "instance_hour_counts"

    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    flow: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


#: PostgreSQL only: what the triggers add to or take from a count, appended and never
#: updated, so that hub processes writing at once never wait on one another's counts;
#: folded into `instance_hour_counts` now and then (store/hour_counts.py). No key: rows
#: are only appended and taken away whole.
instance_count_changes = Table(
    "instance_count_changes",
    Base.metadata,
    Column("hour", DateTime(timezone=True), nullable=False),
    Column("flow", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("change", BigInteger, nullable=False),
)


class BusinessKeyRow(Base):
    """An identifier an operator searches by: messageId, enrollmentId, syncRequestId..."""

    __tablename__ = "business_keys"
    __table_args__ = (Index("ix_business_keys_value_kind", "value", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    value: Mapped[str] = mapped_column(String(200))


class ActivityRow(Base):
    """One outbound call or step of an instance."""

    __tablename__ = "activities"
    # A file's activities are numbered after the last kept, a thousand times a file.
    # Also an instance's activities, and on SQLite its foreign key's check (instance_id
    # first): no index of instance_id alone.
    __table_args__ = (Index("ix_activities_instance_seq", "instance_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String(32))
    operation: Mapped[str] = mapped_column(String(64))
    method: Mapped[str | None] = mapped_column(String(8))
    path: Mapped[str | None] = mapped_column(String(400))
    http_status: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ErrorNoticeRow(Base):
    """An error already emailed for an instance, so the same error is emailed once."""

    __tablename__ = "error_notices"

    instance_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RejectionEmailRow(Base):
    """When a caller's rejected messages were last emailed about: a burst is one email."""

    __tablename__ = "rejection_emails"

    caller: Mapped[str] = mapped_column(String(64), primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FileJobRow(Base):
    """A file flow's message and the state of its current run (flows 7, 8)."""

    __tablename__ = "file_jobs"

    instance_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    flow: Mapped[str] = mapped_column(String(64))
    message: Mapped[Any] = mapped_column(JSON)
    #: queued (health check next), running (segments going), failing (a segment failed:
    #: no new ones go), acking (the one acknowledgement is due), done, acking_again (the
    #: run's acknowledgement is to go to DERMS again, as it was sent). The outcome is the
    #: acknowledgement's ackType: SUCCESS, ERROR (rows set aside) or FAILURE.
    state: Mapped[str] = mapped_column(String(16), index=True)
    outcome: Mapped[str | None] = mapped_column(String(8))
    failure: Mapped[str | None] = mapped_column(Text)
    #: The rows that could not go: how many, the first 1,000 named ({line, record_id,
    #: reason}), and all of them as they came, CSV lines zlib-compressed.
    rows_set_aside: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    set_aside: Mapped[Any | None] = mapped_column(JSON)
    set_aside_zlib: Mapped[bytes | None] = mapped_column(LargeBinary)
    run: Mapped[int] = mapped_column(Integer)
    total_rows: Mapped[int] = mapped_column(Integer)
    total_segments: Mapped[int] = mapped_column(Integer)
    owner: Mapped[str | None] = mapped_column(String(80))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ack_error: Mapped[str | None] = mapped_column(Text)
    #: The DERMS connection the file's acknowledgements go to: the one that sent it.
    derms_connection: Mapped[str | None] = mapped_column(String(80))
    #: The run's MsgAck as it went to DERMS, to send again as it was.
    ack: Mapped[Any | None] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SegmentRow(Base):
    """`segments.size` rows of a file, as CSV lines (zlib-compressed), and whether CPMCS took
    them."""

    __tablename__ = "segments"
    __table_args__ = (Index("ix_segments_instance_seq", "instance_id", "seq", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(Integer)
    first_line: Mapped[int] = mapped_column(Integer)
    row_count: Mapped[int] = mapped_column(Integer)
    rows_zlib: Mapped[bytes] = mapped_column(LargeBinary)
    #: pending, sending (claimed under a lease), accepted, failed.
    status: Mapped[str] = mapped_column(String(12), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Sent again when CPMCS may have had it already: claimed again after a claim whose
    #: lease ran out while sending, or tried again after a try whose answer was lost.
    sent_again: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    owner: Mapped[str | None] = mapped_column(String(80))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)


class StagedFileRow(Base):
    """A file received to be passed on unchanged (flow 15), and the state of its transfer."""

    __tablename__ = "staged_files"

    instance_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    file_name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    #: queued (a transfer is due), running (claimed under a lease), failed, done.
    state: Mapped[str] = mapped_column(String(12), index=True)
    owner: Mapped[str | None] = mapped_column(String(80))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The chunks go once the file is stored where it was going; the row stays as a record.
    chunks_kept: Mapped[bool] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StagedChunkRow(Base):
    """A piece of a staged file, in order: a file of any size is read and written a chunk
    at a time, and every hub process sharing the database can read it."""

    __tablename__ = "staged_file_chunks"
    __table_args__ = (PrimaryKeyConstraint("instance_id", "seq"),)

    instance_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("staged_files.instance_id", ondelete="CASCADE")
    )
    seq: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ScheduleRow(Base):
    """A scheduled flow: the ticks handled so far, and the lease of the run going now."""

    __tablename__ = "schedules"

    flow: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: Ticks up to this moment are handled (run, skipped, or before the schedule existed).
    ticks_through: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: The run going now, held under a lease so that two runs never overlap.
    running_instance: Mapped[str | None] = mapped_column(String(36))
    lease_owner: Mapped[str | None] = mapped_column(String(80))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_instance: Mapped[str | None] = mapped_column(String(36))
    last_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ScheduleTickRow(Base):
    """One due tick of a schedule, claimed by the one hub process that inserted it."""

    __tablename__ = "schedule_ticks"

    flow: Mapped[str] = mapped_column(String(64), primary_key=True)
    tick: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    owner: Mapped[str] = mapped_column(String(80))
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    instance_id: Mapped[str | None] = mapped_column(String(36))
    #: Why the tick started no run: the previous run, still going.
    skipped: Mapped[str | None] = mapped_column(Text)


class LookupAuditRow(Base):
    """One operator's edit of a lookup: who, when, and each row added, changed or removed."""

    __tablename__ = "lookup_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lookup: Mapped[str] = mapped_column(String(80), index=True)
    operator: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    #: [{"key": ..., "before": [...] | null, "after": [...] | null}, ...]
    changes: Mapped[Any] = mapped_column(JSON)


class HubProcessRow(Base):
    """A running hub process (serve, worker, run), seen alive at `seen_at`: the instances
    it runs are given up as failed once it stops without finishing them."""

    __tablename__ = "hub_processes"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    command: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: Set when the process stopped of its own accord.
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ConsoleLogoutRow(Base):
    """A console session its operator logged out of, refused by every hub process until
    its cookie would have expired anyway."""

    __tablename__ = "console_logouts"

    #: SHA-256 of the session's random token: the cookie itself is not kept.
    session_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class LoginFailureRow(Base):
    """A login that failed, or is being checked, on any way in (API, /metrics, console),
    counted against its user, its address and the two together by every hub process alike."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_user_address", "user_digest", "address_digest"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: SHA-256 of "user:<name>", or of "bearer" for a token: a password typed as a username
    #: is not kept.
    user_digest: Mapped[str] = mapped_column(String(64))
    #: SHA-256 of the client's address.
    address_digest: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
