"""The database tables, as peewee models.

These describe the schema *now*. The schema on disk is built by the numbered steps
in :mod:`storage.migrations`; a test checks that migrating an empty database
gives exactly these tables and columns, so a change here without a migration fails.
"""

from __future__ import annotations

import threading
from typing import Any

from peewee import (
    SQL,
    BigIntegerField,
    BlobField,
    CharField,
    DatabaseProxy,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from storage.fields import UtcDateTimeField


class PerThreadDatabase(DatabaseProxy):
    """The models' database, chosen per thread.

    Each :class:`storage.store.SqlStore` runs all its work on its own database thread
    and points this proxy at its database there, so two stores in one process (two
    desks in a test, a migration tool reading one database and writing another) never
    send one store's queries to the other's database.
    """

    __slots__ = ("_local",)

    def __init__(self) -> None:
        object.__setattr__(self, "_local", threading.local())
        super().__init__()

    @property
    def obj(self) -> Any:
        return getattr(self._local, "db", None)

    @obj.setter
    def obj(self, value: Any) -> None:
        self._local.db = value

    def __setattr__(self, attr: str, value: Any) -> None:
        object.__setattr__(self, attr, value)


database_proxy = PerThreadDatabase()


class BaseModel(Model):
    # Declared for the type checker; peewee adds the primary key and *_id accessors.
    id: Any

    class Meta:
        database = database_proxy
        legacy_table_names = False


class SchemaVersion(BaseModel):
    version = IntegerField()


class Queue(BaseModel):
    name = CharField(unique=True)
    created_at = UtcDateTimeField()


class Ticket(BaseModel):
    number = CharField(unique=True)
    queue = ForeignKeyField(Queue, backref="tickets", on_delete="RESTRICT")
    state = CharField(index=True)
    owner = TextField(null=True)
    owner_name = TextField(null=True)
    subject = TextField()
    requester_email = TextField(index=True)
    requester_name = TextField()
    created_at = UtcDateTimeField(index=True)  # a month's stats (schema step 5)
    updated_at = UtcDateTimeField()  # search lists newest first: indexed with id, below
    version = IntegerField(default=0)
    priority = IntegerField(default=3)
    language = CharField(default="")
    pending_until = UtcDateTimeField(null=True, index=True)
    merged_into_id = IntegerField(null=True)
    linked_to_id = IntegerField(null=True)
    owner_active_at = UtcDateTimeField(null=True)
    reminded_at = UtcDateTimeField(null=True)

    class Meta:
        # schema step 5; its partial ticket_unowned (WHERE owner IS NULL) is only there
        indexes = ((("updated_at", "id"), False),)


class RawMessage(BaseModel):
    """The bytes of every received mail, exactly as fetched: the ticket's evidence."""

    sha256 = CharField(index=True)
    size = IntegerField()
    data = BlobField()


class Article(BaseModel):
    ticket_id: Any

    ticket = ForeignKeyField(Ticket, backref="articles", on_delete="RESTRICT")
    kind = CharField()
    author = TextField()
    author_name = TextField()
    subject = TextField()
    body = TextField()
    message_id = TextField(null=True, unique=True)
    in_reply_to = TextField()
    references = TextField()  # JSON list
    to_addrs = TextField()  # JSON list
    cc_addrs = TextField()  # JSON list
    auto_kind = CharField()
    raw_message = ForeignKeyField(RawMessage, null=True, on_delete="RESTRICT", column_name="raw_id")
    send_state = CharField(null=True)
    send_attempts = IntegerField(default=0)
    sent_at = UtcDateTimeField(null=True)
    last_error = TextField()
    created_at = UtcDateTimeField()
    held = IntegerField(default=0)


class AttachmentBlob(BaseModel):
    """The bytes of one distinct attachment content, stored once however often it arrives."""

    sha256 = CharField(unique=True)
    size = IntegerField()
    data = BlobField()


class Attachment(BaseModel):
    """One file of one article. Its bytes are in ``blob`` (schema step 3 on), or, for rows
    stored before step 3, in ``data``; ``sha256`` and ``size`` are checked on every read."""

    article_id: Any
    blob_id: Any

    article = ForeignKeyField(Article, backref="attachment_rows", on_delete="RESTRICT")
    filename = TextField()
    content_type = TextField()
    size = IntegerField()
    sha256 = CharField(index=True)
    data = BlobField(null=True)  # rows from before schema step 3 only
    blob = ForeignKeyField(AttachmentBlob, null=True, on_delete="RESTRICT", column_name="blob_id")

    class Meta:
        constraints = (SQL('CHECK ("data" IS NOT NULL OR "blob_id" IS NOT NULL)'),)


class ChatPost(BaseModel):
    ticket_id: Any

    ticket = ForeignKeyField(Ticket, backref="chat_posts", on_delete="RESTRICT")
    platform = CharField()
    room = TextField()
    root_ref = TextField()
    created_at = UtcDateTimeField()

    class Meta:
        indexes = ((("ticket", "platform"), True), (("platform", "root_ref"), False))


class MailboxCursor(BaseModel):
    source = TextField(unique=True)
    # IMAP UIDVALIDITY and UIDs go up to 2**32 - 1 (BIGINT on PostgreSQL since step 6)
    validity = BigIntegerField()
    last_uid = BigIntegerField()


class IntakeRecord(BaseModel):
    """One message taken in from a mail source; ``done_at`` is set once it is flagged there."""

    source = TextField()
    validity = BigIntegerField()
    item = TextField()
    message_id = TextField()
    ticket = ForeignKeyField(Ticket, null=True, on_delete="RESTRICT")
    committed_at = UtcDateTimeField()
    done_at = UtcDateTimeField(null=True)

    class Meta:
        indexes = ((("source", "validity", "item"), True), (("source", "done_at"), False))


class OutboxEntry(BaseModel):
    ticket_id: Any
    article_id: Any

    channel = CharField()
    kind = CharField()
    ticket = ForeignKeyField(Ticket, on_delete="RESTRICT")
    article = ForeignKeyField(Article, null=True, on_delete="RESTRICT")
    payload = TextField()  # JSON object
    state = CharField()  # pending | done | failed
    attempts = IntegerField(default=0)
    next_attempt_at = UtcDateTimeField()
    last_error = TextField()
    created_at = UtcDateTimeField()
    done_at = UtcDateTimeField(null=True)
    #: The instance carrying the item out now (schema step 6); None: nobody.
    claimed_by = IntegerField(null=True, index=True)
    #: 0; 1 for a flooding sender's posts, carried out when nothing else is due.
    priority = IntegerField(default=0)

    class Meta:
        table_name = "outbox"
        indexes = ((("channel", "state", "next_attempt_at"), False),)


class AuditEntry(BaseModel):
    """Who did what, when. Written by every action; never updated or deleted by the bot."""

    ticket_id: Any

    at = UtcDateTimeField(index=True)
    actor_platform = CharField()
    actor_id = TextField(index=True)
    actor_name = TextField()
    action = CharField(index=True)
    ticket = ForeignKeyField(Ticket, null=True, on_delete="RESTRICT")
    detail = TextField()
    before = TextField(default="")
    after = TextField(default="")

    class Meta:
        table_name = "audit_log"
        indexes = ((("ticket", "action", "at"), False),)  # schema step 5


class TicketCounter(BaseModel):
    day = CharField(unique=True)
    value = IntegerField()


class TicketTag(BaseModel):
    ticket_id: Any

    ticket = ForeignKeyField(Ticket, backref="tag_rows", on_delete="RESTRICT")
    name = CharField(index=True)

    class Meta:
        indexes = ((("ticket", "name"), True),)


class SenderMark(BaseModel):
    """What the desk knows about an address: ``spam`` (for the rules), ``undeliverable``."""

    address = TextField(index=True)
    kind = CharField()
    at = UtcDateTimeField()
    detail = TextField()

    class Meta:
        indexes = ((("address", "kind"), True),)


class AutoResponse(BaseModel):
    """Each acknowledgement sent, so a sender gets at most N a day (RFC 3834 loop guard)."""

    address = TextField()
    sent_at = UtcDateTimeField()
    ticket = ForeignKeyField(Ticket, null=True, on_delete="RESTRICT")

    class Meta:
        indexes = ((("address", "sent_at"), False),)


class Volunteer(BaseModel):
    """What a volunteer told the bot about themselves: the languages they answer in."""

    user_id = TextField(unique=True)
    languages = TextField()  # JSON list of codes
    updated_at = UtcDateTimeField()


class Instance(BaseModel):
    """A ``ticketbot run`` process: its id marks its outbox claims and names its lock."""

    name = TextField()
    started_at = UtcDateTimeField()
    last_seen = UtcDateTimeField()
    roles = TextField(default="")
    stopped_at = UtcDateTimeField(null=True)

    class Meta:
        table_name = "instance"


class JobState(BaseModel):
    """When a scheduled job last ran (the daily digest), so a restart neither skips nor repeats."""

    key = CharField(unique=True)
    value = TextField()


class DeskSetting(BaseModel):
    """A setting admins changed at run time (``queue:<name>``, ``rules``), as JSON."""

    key = CharField(unique=True)
    value = TextField()
    updated_at = UtcDateTimeField()
    updated_by = TextField()


class AccessGrant(BaseModel):
    """Access to a queue granted (or taken away: ``none``) by an admin."""

    subject = TextField()
    queue = TextField()
    level = CharField()
    subqueues = IntegerField(default=1)
    granted_by = TextField()
    at = UtcDateTimeField()

    class Meta:
        indexes = ((("subject", "queue"), True),)


class AdminGrant(BaseModel):
    """An admin added with ``admin grant`` (the first ones are in ``bot.toml``)."""

    user_id = TextField(unique=True)
    granted_by = TextField()
    at = UtcDateTimeField()


ALL_MODELS: list[type[BaseModel]] = [
    SchemaVersion,
    Queue,
    Ticket,
    RawMessage,
    Article,
    AttachmentBlob,
    Attachment,
    ChatPost,
    MailboxCursor,
    IntakeRecord,
    OutboxEntry,
    AuditEntry,
    TicketCounter,
    TicketTag,
    SenderMark,
    AutoResponse,
    Volunteer,
    JobState,
    DeskSetting,
    AccessGrant,
    AdminGrant,
    Instance,
]
