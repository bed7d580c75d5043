"""The audit log's rows, hashes and checks: a record nobody can quietly change.

Every gate event is one row in two hash chains at once: its case's chain (`case_prev` -> the
previous row of the same case) and the global chain (`global_prev` -> the row before it, whatever
its case), so deleting one row, or every row of a case, breaks a link. A decision trace is bound to
its case's chain by a digest of the columns an insider could edit. A signed checkpoint of the
global head, kept outside the database, catches what the chains alone cannot: history rewritten
and re-chained after some row, or a truncated tail.

Hashes are sha256 hex over RFC 8785 canonical JSON, so key order and number formatting (1.0 and
1) never change them. This module is pure (no I/O): the PostgreSQL store, the CLI and the offline
bundle check all use the same definitions. Exceptions:

    AuditError
     ├── AuditInputError   a file or value handed to us is not what it claims (one line, safe to show)
     └── CheckpointInvalid a checkpoint's signature does not hold for the given key
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

import rfc8785
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    StringConstraints,
    ValidationError,
)

CHAIN_VERSION = 1
GENESIS = "0" * 64  # the "previous hash" of a chain's first row
CHECKPOINT_FORMAT: Final = "hitl-audit-checkpoint/1"
BUNDLE_FORMAT: Final = "hitl-audit-bundle/1"
MAX_BUNDLE_BYTES = 64 * 1024 * 1024  # refused before parsing; callers should check a file's size before reading it
MAX_CHECKPOINT_BYTES = 64 * 1024
MAX_PROBLEMS = 100  # a report lists this many; one break usually explains the rest

# ---------------------------------------------------------------------------------------------- errors


class AuditError(Exception):
    """Base of this module's errors."""


class AuditInputError(AuditError, ValueError):
    """A bundle, checkpoint, key or value that is not what it claims; the message is one line."""


class CheckpointInvalid(AuditError):
    """A checkpoint whose signature does not hold for the key it is checked with."""


# ---------------------------------------------------------------------------------------------- canonical form


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON of a JSON value; AuditInputError if it has none (NaN, an integer
    beyond 2**53, a lone surrogate, nesting deeper than Python recursion allows)."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeError, RecursionError, TypeError, ValueError) as err:
        raise AuditInputError(f"value has no canonical JSON form: {str(err)[:120] or type(err).__name__}") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def format_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a Z: the one spelling of an instant that hashes see."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_UTC_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def _to_utc(value: Any) -> Any:
    """Aware datetimes are normalised to UTC; text must be exactly `format_utc`'s spelling, so
    two spellings of one instant (which hash alike) cannot hide an edit in a bundle."""
    if isinstance(value, str):
        if not _UTC_TEXT.fullmatch(value):
            raise ValueError("timestamp must be written YYYY-MM-DDTHH:MM:SS.ffffffZ (UTC, microseconds)")
        try:
            return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        except ValueError:
            raise ValueError("timestamp is not a real date and time") from None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("timestamp must carry a time zone")
        return value.astimezone(UTC)
    raise ValueError("timestamp must be a datetime or YYYY-MM-DDTHH:MM:SS.ffffffZ text")


UtcTimestamp = Annotated[datetime, BeforeValidator(_to_utc), PlainSerializer(format_utc, return_type=str, when_used="json")]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Key = Annotated[str, StringConstraints(min_length=1, max_length=300)]


MAX_EXACT_INT = 2**53 - 1  # beyond it, RFC 8785 (like JavaScript) knows a number only as a double


def json_number(text: str) -> int | float:
    """`parse_int` for json.loads: an integer too large for an exact double is read as the double
    RFC 8785 hashes it as, so any JSON a writer produced (jsonb included) has a canonical form."""
    number = int(text)
    return number if -MAX_EXACT_INT <= number <= MAX_EXACT_INT else float(number)


def _as_doubles(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _as_doubles(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_doubles(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -MAX_EXACT_INT <= value <= MAX_EXACT_INT:
        return float(value)
    return value


def _canonical_object(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    """The object as its canonical JSON reads back: 1.0 becomes 1 (and 2**60 the double 2.0**60),
    so equal objects compare equal and hash alike wherever they were decoded."""
    try:
        try:
            text = rfc8785.dumps(value)
        except rfc8785.IntegerDomainError:
            text = canonical_json(_as_doubles(value))
        except (rfc8785.CanonicalizationError, UnicodeError, RecursionError, TypeError, ValueError):
            text = canonical_json(value)  # raises AuditInputError with the reason
    except AuditInputError as err:
        raise ValueError(str(err)) from None
    decoded: dict[str, JsonValue] = json.loads(text, parse_int=json_number)
    return decoded


CanonicalObject = Annotated[dict[str, JsonValue], AfterValidator(_canonical_object)]

# ---------------------------------------------------------------------------------------------- rows


class AuditKind(StrEnum):
    CASE_OPENED = "case_opened"
    GATE_OPENED = "gate_opened"
    REMINDED = "reminded"
    ESCALATED = "escalated"
    DECISION_ACCEPTED = "decision_accepted"
    DECISION_REFUSED = "decision_refused"
    OPERATOR_ACTION = "operator_action"
    INFO_ASKED = "info_asked"
    INFO_ANSWERED = "info_answered"
    INFO_UNANSWERED = "info_unanswered"  # a question to a person closed at its deadline without an answer
    DECIDED_BY_POLICY = "decided_by_policy"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    TRACE_RECORDED = "trace_recorded"
    TRACE_AMENDED = "trace_amended"
    TRACE_SUPERSEDED = "trace_superseded"
    PRECEDENT_RETRACTED = "precedent_retracted"


# The events whose body binds a trace: {"trace_id": int, "trace_sha256": hex}. The newest one wins.
TRACE_DIGEST_KINDS = frozenset({AuditKind.TRACE_RECORDED, AuditKind.TRACE_AMENDED})


class AuditEvent(BaseModel):
    """What a writer submits; the store turns it into an `AuditRow` exactly once per `event_key`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_key: Key = Field(description="Idempotency key, e.g. '<case_id>#<first_run_id>/gate_opened/1'")
    case_id: Key
    kind: AuditKind
    at: UtcTimestamp
    body: CanonicalObject = Field(default_factory=dict)


class AuditRow(BaseModel):
    """One stored row: the event, where it sits in both chains, and the hashes that hold it there."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    global_seq: int = Field(ge=1)
    case_seq: int = Field(ge=1)
    event_key: Key
    case_id: Key
    kind: AuditKind
    at: UtcTimestamp
    body: CanonicalObject
    case_prev: Sha256Hex
    entry_hash: Sha256Hex
    global_prev: Sha256Hex
    row_hash: Sha256Hex

    @property
    def body_canonical(self) -> str:
        """The body's RFC 8785 text: what the store keeps, so jsonb's rewriting cannot touch a hash."""
        return canonical_json(self.body).decode()

    @classmethod
    def next_after(cls, event: AuditEvent, *, case_head: AuditRow | None, global_head: AuditRow | None) -> AuditRow:
        return chain_row(event, case_head=case_head, global_head=global_head)


def entry_document(
    *, case_id: str, case_seq: int, event_key: str, kind: str, at: datetime, body: Mapping[str, Any], case_prev: str
) -> dict[str, Any]:
    """What `entry_hash` is the hash of (the auditor's procedure in docs/audit-verification.md)."""
    return {
        "v": CHAIN_VERSION,
        "case_id": case_id,
        "case_seq": case_seq,
        "event_key": event_key,
        "kind": str(kind),
        "at": format_utc(at),
        "body": dict(body),
        "case_prev": case_prev,
    }


def row_document(*, global_seq: int, global_prev: str, entry_hash: str) -> dict[str, Any]:
    """What `row_hash` is the hash of: the global chain needs only the entry's hash, not its content."""
    return {"v": CHAIN_VERSION, "global_seq": global_seq, "global_prev": global_prev, "entry_hash": entry_hash}


def hash_entry(
    *, case_id: str, case_seq: int, event_key: str, kind: str, at: datetime, body: Mapping[str, Any], case_prev: str
) -> str:
    document = entry_document(
        case_id=case_id, case_seq=case_seq, event_key=event_key, kind=kind, at=at, body=body, case_prev=case_prev
    )
    return sha256_hex(canonical_json(document))


def hash_row(*, global_seq: int, global_prev: str, entry_hash: str) -> str:
    return sha256_hex(canonical_json(row_document(global_seq=global_seq, global_prev=global_prev, entry_hash=entry_hash)))


def _entry_hash_of(row: AuditRow) -> str:
    return hash_entry(
        case_id=row.case_id,
        case_seq=row.case_seq,
        event_key=row.event_key,
        kind=row.kind,
        at=row.at,
        body=row.body,
        case_prev=row.case_prev,
    )


def chain_row(event: AuditEvent, *, case_head: AuditRow | None, global_head: AuditRow | None) -> AuditRow:
    """The row to insert for `event` after the case's newest row and the log's newest row
    (None for the first of either)."""
    if case_head is not None and case_head.case_id != event.case_id:
        raise ValueError(f"case head is of case {case_head.case_id!r}, not the event's case {event.case_id!r}")
    case_seq = 1 if case_head is None else case_head.case_seq + 1
    case_prev = GENESIS if case_head is None else case_head.entry_hash
    global_seq = 1 if global_head is None else global_head.global_seq + 1
    global_prev = GENESIS if global_head is None else global_head.row_hash
    entry = hash_entry(
        case_id=event.case_id,
        case_seq=case_seq,
        event_key=event.event_key,
        kind=event.kind,
        at=event.at,
        body=event.body,
        case_prev=case_prev,
    )
    return AuditRow(
        global_seq=global_seq,
        case_seq=case_seq,
        event_key=event.event_key,
        case_id=event.case_id,
        kind=event.kind,
        at=event.at,
        body=event.body,
        case_prev=case_prev,
        entry_hash=entry,
        global_prev=global_prev,
        row_hash=hash_row(global_seq=global_seq, global_prev=global_prev, entry_hash=entry),
    )


def chain_rows(
    events: Iterable[AuditEvent], *, case_heads: Mapping[str, AuditRow], global_head: AuditRow | None
) -> list[AuditRow]:
    """Rows for several events appended in order (one transaction); `case_heads` holds the newest
    stored row of each case among the events (missing: the case has none yet)."""
    heads = dict(case_heads)
    rows: list[AuditRow] = []
    for event in events:
        row = chain_row(event, case_head=heads.get(event.case_id), global_head=global_head)
        heads[event.case_id] = global_head = row
        rows.append(row)
    return rows


_ROW_FIELDS = tuple(AuditRow.model_fields)


def row_from_mapping(stored: Mapping[str, Any]) -> AuditRow:
    """An `AuditRow` from a stored row (a dict of columns; extra columns such as recorded_at are
    ignored; `body_canonical` text is read when there is no `body`)."""
    values = {name: stored[name] for name in _ROW_FIELDS if name in stored}
    if "body" not in values and isinstance(stored.get("body_canonical"), str):
        try:
            values["body"] = json.loads(stored["body_canonical"], parse_int=json_number)
        except (ValueError, RecursionError):
            raise AuditInputError("body_canonical is not JSON") from None
    try:
        return AuditRow.model_validate(values)
    except ValidationError as err:
        raise AuditInputError(_first_error(err)) from None


# ---------------------------------------------------------------------------------------------- traces


class TraceRecord(BaseModel):
    """The `decision_traces` columns an insider could edit, plus the trace document; its digest is
    in the case's chain."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trace_id: int = Field(ge=1)
    decision_key: str
    case_id: str
    outcome: str
    decided_by: str
    decided_via: str
    reason: str
    trace: CanonicalObject


def trace_digest(record: TraceRecord) -> str:
    document = {"v": CHAIN_VERSION, **record.model_dump(mode="json")}
    return sha256_hex(canonical_json(document))


def trace_event_body(record: TraceRecord) -> dict[str, JsonValue]:
    """The body of the trace_recorded (or trace_amended) event that binds `record` to its case's chain."""
    return {"trace_id": record.trace_id, "trace_sha256": trace_digest(record)}


# ---------------------------------------------------------------------------------------------- checkpoints


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex of sha256 of the raw 32-byte public key: names a key in checkpoints and reports."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256_hex(raw)[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def private_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def load_public_key_pem(data: bytes | str, *, what: str = "public key") -> Ed25519PublicKey:
    """An Ed25519 public key from SubjectPublicKeyInfo PEM (surrounding whitespace allowed)."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        key = serialization.load_pem_public_key(raw.strip() + b"\n")
    except (ValueError, TypeError, UnicodeError, UnsupportedAlgorithm):
        raise AuditInputError(f"{what} is not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditInputError(f"{what} is a {type(key).__name__.removeprefix('_')}, not an Ed25519 key")
    return key


def load_private_key_pem(data: bytes, *, what: str = "private key") -> Ed25519PrivateKey:
    """An Ed25519 private key from unencrypted PKCS8 PEM."""
    try:
        key = serialization.load_pem_private_key(data.strip() + b"\n", password=None)
    except TypeError:
        raise AuditInputError(f"{what} is encrypted; give an unencrypted PKCS8 PEM key") from None
    except (ValueError, UnicodeError, UnsupportedAlgorithm):
        raise AuditInputError(f"{what} is not a PEM private key (-----BEGIN PRIVATE KEY-----)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditInputError(f"{what} is a {type(key).__name__.removeprefix('_')}, not an Ed25519 key")
    return key


def _strict_signature(value: Any) -> Any:
    """base64url without padding of exactly 64 bytes, spelled the one way that decodes back to it:
    the last character's unused bits could otherwise change without changing the signature."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]{86}", value):
        raise ValueError("signature must be 86 base64url characters (an Ed25519 signature, no padding)")
    try:
        raw = base64.urlsafe_b64decode(value + "==")
    except (binascii.Error, ValueError):
        raise ValueError("signature is not base64url") from None
    if len(raw) != 64 or _b64url(raw) != value:
        raise ValueError("signature is not the canonical base64url of 64 bytes")
    return value


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Checkpoint(BaseModel):
    """A signed statement that the global chain's row `global_seq` had `row_hash` at `signed_at`.
    Kept outside the database, it makes a rewritten or truncated history visible."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["hitl-audit-checkpoint/1"] = CHECKPOINT_FORMAT
    global_seq: int = Field(ge=1)
    row_hash: Sha256Hex
    signed_at: UtcTimestamp
    key_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
    signature: Annotated[str, BeforeValidator(_strict_signature)]

    @property
    def head(self) -> tuple[int, str]:
        return (self.global_seq, self.row_hash)

    def signed_bytes(self) -> bytes:
        return _checkpoint_payload(self.global_seq, self.row_hash, self.signed_at, self.key_id)

    def to_json_bytes(self) -> bytes:
        """The checkpoint file: canonical JSON and a newline."""
        return canonical_json(self.model_dump(mode="json")) + b"\n"


def _checkpoint_payload(global_seq: int, row_hash: str, signed_at: datetime, key: str) -> bytes:
    return canonical_json(
        {
            "format": CHECKPOINT_FORMAT,
            "global_seq": global_seq,
            "row_hash": row_hash,
            "signed_at": format_utc(signed_at),
            "key_id": key,
        }
    )


def sign_checkpoint(private_key: Ed25519PrivateKey, head: AuditRow | tuple[int, str], now: datetime) -> Checkpoint:
    """Sign the global head (the newest row, or its (global_seq, row_hash))."""
    global_seq, row_hash = (head.global_seq, head.row_hash) if isinstance(head, AuditRow) else head
    signer = key_id(private_key.public_key())
    signed_at = _to_utc(now)
    signature = private_key.sign(_checkpoint_payload(global_seq, row_hash, signed_at, signer))
    return Checkpoint(global_seq=global_seq, row_hash=row_hash, signed_at=signed_at, key_id=signer, signature=_b64url(signature))


def verify_checkpoint(checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> None:
    """Raises CheckpointInvalid (one line) unless `public_key` signed exactly this checkpoint."""
    expected = key_id(public_key)
    if checkpoint.key_id != expected:
        raise CheckpointInvalid(f"checkpoint was signed by key {checkpoint.key_id}, not by the given key {expected}")
    try:
        public_key.verify(base64.urlsafe_b64decode(checkpoint.signature + "=="), checkpoint.signed_bytes())
    except InvalidSignature:
        raise CheckpointInvalid(
            f"checkpoint signature does not hold for key {expected}: the checkpoint was changed after signing"
        ) from None


def parse_checkpoint(data: bytes, *, what: str = "checkpoint") -> Checkpoint:
    """A checkpoint file's contents; AuditInputError (one line) for anything else."""
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise AuditInputError(f"{what} is {len(data)} bytes; a checkpoint is a few hundred (limit {MAX_CHECKPOINT_BYTES})")
    value = _decode_json(data, what=what)
    _check_format(value, CHECKPOINT_FORMAT, what=what)
    try:
        return Checkpoint.model_validate_json(json.dumps(value), strict=True)
    except ValidationError as err:
        raise AuditInputError(f"{what}: {_first_error(err)}") from None


# ---------------------------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class AuditScope:
    """What a verification covers: the whole log (`case_id` None) or one case's rows."""

    case_id: str | None = None

    @classmethod
    def whole_log(cls) -> AuditScope:
        return cls()

    @classmethod
    def case(cls, case_id: str) -> AuditScope:
        return cls(case_id)

    def __str__(self) -> str:
        return "the whole log" if self.case_id is None else f"case {self.case_id}"


WHOLE_LOG = AuditScope()


class AuditReport(BaseModel):
    """The outcome of a verification. `problems` are one line each, the first one first."""

    ok: bool
    problems: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="What was not checked, or checked against what")
    rows_checked: int = 0
    cases_checked: int = 0
    traces_checked: int = 0
    head: tuple[int, str] | None = None

    def summary(self) -> str:
        """One line for a terminal."""
        counts = f"{self.rows_checked} rows, {self.cases_checked} cases, {self.traces_checked} traces"
        if self.ok:
            return f"audit log holds: {counts} checked" + (f", head {self.head[0]} {self.head[1][:16]}" if self.head else "")
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"audit log does NOT hold: {self.problems[0]}{more}"


def _rows(first: int, last: int) -> str:
    return f"row {first} was" if first == last else f"rows {first}..{last} were"


def _where(row: AuditRow) -> str:
    return f"global_seq {row.global_seq} (case {row.case_id!r}, event_key {row.event_key!r})"


@dataclass
class _TraceEvent:
    global_seq: int
    case_id: str
    event_key: str
    digest: str | None  # None: the body does not hold a digest


@dataclass
class ChainVerifier:
    """Checks rows one at a time in stored order (global_seq, or case_seq for one case), so a
    caller can stream millions of rows from a cursor: memory grows with cases and traces, not rows.
    Feed every row, then `finish()`; `verify_chain` does both."""

    scope: AuditScope = WHOLE_LOG
    checkpoint: Checkpoint | None = None
    problems: list[str] = field(default_factory=list)
    rows_checked: int = 0
    _omitted: int = 0
    _last: tuple[int, str, str] | None = None  # (global_seq, row_hash, where) of the previous row fed
    _case_heads: dict[str, tuple[int, str]] = field(default_factory=dict)  # case_id -> (case_seq, entry_hash)
    _trace_events: dict[int, _TraceEvent] = field(default_factory=dict)
    _gap_at: tuple[int, int, str] | None = None  # (expected, got, problem) when the previous row skipped ahead
    _checkpoint_row_seen: bool = False

    def _problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        else:
            self._omitted += 1

    def feed(self, stored: AuditRow | Mapping[str, Any]) -> None:
        self.rows_checked += 1
        if isinstance(stored, AuditRow):
            row = stored
        else:
            try:
                row = row_from_mapping(stored)
            except AuditInputError as err:
                self._invalid_row(stored, err)
                return
        problem = self._check(row)
        if problem:
            self._problem(f"{_where(row)}: {problem}")
        # resynchronise on what is stored, so one edit is one problem, not every row after it; a row
        # stored too late (a swapped pair) does not move the heads back
        if self._last is None or row.global_seq >= self._last[0]:
            self._last = (row.global_seq, row.row_hash, _where(row))
        case_head = self._case_heads.get(row.case_id)
        if case_head is None or row.case_seq >= case_head[0]:
            self._case_heads[row.case_id] = (row.case_seq, row.entry_hash)
        if self.checkpoint is not None and row.global_seq == self.checkpoint.global_seq:
            self._checkpoint_row_seen = True
            if row.row_hash != self.checkpoint.row_hash and not problem:
                self._problem(
                    f"{_where(row)}: row_hash differs from the one the checkpoint signed at "
                    f"{format_utc(self.checkpoint.signed_at)}: history up to this row was rewritten"
                )
        if row.kind in TRACE_DIGEST_KINDS:
            self._note_trace_event(row)

    def _invalid_row(self, stored: Mapping[str, Any], err: AuditInputError) -> None:
        """Name a row that is not even a row, and take its stored hashes as they are for the next rows."""
        seq, case_id, case_seq = stored.get("global_seq"), stored.get("case_id"), stored.get("case_seq")
        where = f"global_seq {seq if seq is not None else '?'} (case {case_id!r}, event_key {stored.get('event_key')!r})"
        self._problem(f"{where}: not a valid row: {err}")
        row_hash, entry_hash = stored.get("row_hash"), stored.get("entry_hash")
        if isinstance(seq, int) and isinstance(row_hash, str):
            self._last = (seq, row_hash, where)
        if isinstance(case_id, str) and isinstance(case_seq, int) and isinstance(entry_hash, str):
            self._case_heads[case_id] = (case_seq, entry_hash)

    def _check(self, row: AuditRow) -> str | None:
        """What is wrong with this row in its place, most telling first; None when it holds."""
        if self.scope.case_id is not None and row.case_id != self.scope.case_id:
            return f"is a row of case {row.case_id!r} among the rows of case {self.scope.case_id!r}"
        try:
            entry_hash = _entry_hash_of(row)
        except AuditInputError as unhashable:  # e.g. a number edited in beyond what canonical JSON holds
            return f"its content cannot be hashed ({unhashable}): edited"
        if entry_hash != row.entry_hash:
            return "its content (case_id, case_seq, event_key, kind, at, body, case_prev) does not match its entry_hash: edited"
        if hash_row(global_seq=row.global_seq, global_prev=row.global_prev, entry_hash=row.entry_hash) != row.row_hash:
            for other in (row.global_seq - 1, row.global_seq + 1):
                if other >= 1 and row.row_hash == hash_row(
                    global_seq=other, global_prev=row.global_prev, entry_hash=row.entry_hash
                ):
                    return f"holds the row made for global_seq {other}: rows were reordered, inserted or deleted here"
            return "row_hash does not match (global_seq, global_prev, entry_hash): the row was edited"
        problem = self._check_global_place(row)
        if problem is not None:
            return problem
        return self._check_case_place(row)

    def _check_global_place(self, row: AuditRow) -> str | None:
        gap, self._gap_at = self._gap_at, None
        if self._last is None:
            if self.scope.case_id is None and row.global_seq != 1:
                return f"the log starts at global_seq {row.global_seq}: {_rows(1, row.global_seq - 1)} deleted"
            if self.scope.case_id is None and row.global_prev != GENESIS:
                return "is the first row but its global_prev is not the genesis hash: rows before it were deleted"
            return None
        last_seq, last_hash, last_where = self._last
        if row.global_seq <= last_seq:
            if gap is not None and gap[0] == row.global_seq and self.problems and self.problems[-1] == gap[2]:
                self.problems[-1] = f"{last_where}: stored before global_seq {row.global_seq}: the two rows were swapped"
                return ""  # explained by the swap: nothing more to say about this row
            return f"comes after {last_where}: rows are out of order, duplicated, or that row was inserted"
        if self.scope.case_id is None and row.global_seq != last_seq + 1:
            text = f"follows global_seq {last_seq}: {_rows(last_seq + 1, row.global_seq - 1)} deleted or moved"
            self._gap_at = (last_seq + 1, row.global_seq, f"{_where(row)}: {text}")
            return text
        if row.global_seq == last_seq + 1 and row.global_prev != last_hash:
            return f"its global_prev is not the row_hash of {last_where}: a row was inserted, replaced or reordered here"
        return None

    def _check_case_place(self, row: AuditRow) -> str | None:
        head = self._case_heads.get(row.case_id)
        expected_seq, expected_prev = (1, GENESIS) if head is None else (head[0] + 1, head[1])
        if row.case_seq != expected_seq:
            if head is None:
                return f"is the case's first row but has case_seq {row.case_seq}: its {_rows(1, row.case_seq - 1)} deleted"
            return (
                f"has case_seq {row.case_seq} after the case's row {head[0]}: rows of the case are missing, repeated or reordered"
            )
        if row.case_prev != expected_prev:
            return "its case_prev is not the entry_hash of the case's previous row: a row of the case was replaced"
        return None

    def _note_trace_event(self, row: AuditRow) -> None:
        trace_id, digest = row.body.get("trace_id"), row.body.get("trace_sha256")
        if not isinstance(trace_id, int) or isinstance(trace_id, bool) or trace_id < 1:
            self._problem(f"{_where(row)}: a {row.kind} event without an integer trace_id")
            return
        valid = digest if isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest) else None
        self._trace_events[trace_id] = _TraceEvent(row.global_seq, row.case_id, row.event_key, valid)

    def finish(self, *, traces: Iterable[TraceRecord] | None = None, public_key: Ed25519PublicKey | None = None) -> AuditReport:
        """The report, once every row was fed. `traces` (the current decision_traces rows in scope)
        are checked against their newest trace event; the checkpoint against `public_key`."""
        notes: list[str] = []
        if self.checkpoint is not None:
            self._finish_checkpoint(public_key, notes)
        traces_checked = 0
        if traces is not None:
            seen: set[int] = set()
            for record in traces:
                traces_checked += 1
                seen.add(record.trace_id)
                problem = _trace_problem(record, self._trace_events.get(record.trace_id))
                if problem:
                    self._problem(problem)
            for trace_id, event in sorted(self._trace_events.items()):
                if trace_id not in seen:
                    self._problem(
                        f"trace {trace_id}, recorded at global_seq {event.global_seq} (case {event.case_id!r}, "
                        f"event_key {event.event_key!r}), is missing from the traces: the trace row was deleted"
                    )
        else:
            notes.append("traces not checked (none given)")
        if self.scope.case_id is not None:
            notes.append("one case's rows: links to other cases' rows and a truncated tail are checked only over the whole log")
        if self._omitted:
            self.problems.append(f"... and {self._omitted} more problems")
        return AuditReport(
            ok=not self.problems,
            problems=list(self.problems),
            notes=notes,
            rows_checked=self.rows_checked,
            cases_checked=len(self._case_heads),
            traces_checked=traces_checked,
            head=None if self._last is None else (self._last[0], self._last[1]),
        )

    def _finish_checkpoint(self, public_key: Ed25519PublicKey | None, notes: list[str]) -> None:
        checkpoint = self.checkpoint
        assert checkpoint is not None
        if public_key is None:
            notes.append("checkpoint signature not checked (no public key given)")
        else:
            try:
                verify_checkpoint(checkpoint, public_key)
            except CheckpointInvalid as err:
                self._problem(str(err))
        if self._checkpoint_row_seen:
            return
        if self.scope.case_id is not None:
            notes.append(f"the checkpoint's row {checkpoint.global_seq} is not in {self.scope}: compared only over the whole log")
        else:
            last = 0 if self._last is None else self._last[0]
            self._problem(
                f"the log ends at global_seq {last} but the checkpoint signed at {format_utc(checkpoint.signed_at)} "
                f"covers global_seq {checkpoint.global_seq}: {_rows(last + 1, checkpoint.global_seq)} removed (truncated)"
            )


def _trace_problem(record: TraceRecord, event: _TraceEvent | None) -> str | None:
    where = f"trace {record.trace_id} (case {record.case_id!r}, decision_key {record.decision_key!r})"
    if event is None:
        return f"{where} has no trace_recorded event in the chain: it was added outside the audited path"
    at = f"global_seq {event.global_seq} (event_key {event.event_key!r})"
    if event.digest is None:
        return f"{where}: the trace event at {at} holds no valid trace_sha256"
    if event.case_id != record.case_id:
        return f"{where}: its trace event at {at} is in case {event.case_id!r}: the trace was moved to another case"
    try:
        digest = trace_digest(record)
    except AuditInputError as err:
        return f"{where}: {err}"
    if digest != event.digest:
        return (
            f"{where}: outcome, decided_by, decided_via, reason or the trace document no longer match "
            f"the digest recorded at {at}: the trace was edited"
        )
    return None


def verify_chain(
    rows: Iterable[AuditRow | Mapping[str, Any]],
    *,
    scope: AuditScope = WHOLE_LOG,
    traces: Iterable[TraceRecord] | None = None,
    checkpoint: Checkpoint | None = None,
    public_key: Ed25519PublicKey | None = None,
) -> AuditReport:
    """Recompute every hash and link of `rows` (in stored order) and name the first row that does not hold."""
    verifier = ChainVerifier(scope=scope, checkpoint=checkpoint)
    for row in rows:
        verifier.feed(row)
    return verifier.finish(traces=traces, public_key=public_key)


# ---------------------------------------------------------------------------------------------- bundle


class ChainLink(BaseModel):
    """A global row without its content: enough to carry the global chain through other cases' rows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    global_seq: int = Field(ge=1)
    entry_hash: Sha256Hex
    row_hash: Sha256Hex


class AuditBundle(BaseModel):
    """What `hitl audit export` writes and `hitl audit verify --bundle` checks with no database."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["hitl-audit-bundle/1"]
    case_id: Key
    traces: list[TraceRecord]
    case_rows: list[AuditRow]
    links: list[ChainLink]
    checkpoint: Checkpoint
    public_key_pem: str


def bundle_document(
    *,
    case_id: str,
    traces: Sequence[TraceRecord],
    case_rows: Sequence[AuditRow],
    links: Sequence[ChainLink | AuditRow],
    checkpoint: Checkpoint,
    public_key: Ed25519PublicKey,
) -> dict[str, Any]:
    """The bundle as a JSON-ready dict (write it with `bundle_bytes`). `links`: every global row
    from the case's first row to the checkpoint's row, as links or full rows. ValueError (one line)
    when the parts do not make a bundle, e.g. a checkpoint older than the case's last row."""
    if not case_rows:
        raise ValueError(f"case {case_id!r} has no audit rows to export")
    if any(row.case_id != case_id for row in case_rows):
        raise ValueError(f"case_rows hold rows of another case than {case_id!r}")
    last = case_rows[-1].global_seq
    if checkpoint.global_seq < last:
        raise ValueError(
            f"the checkpoint covers global_seq {checkpoint.global_seq}, before the case's last row {last}: sign a newer one"
        )
    chain = [ChainLink(global_seq=link.global_seq, entry_hash=link.entry_hash, row_hash=link.row_hash) for link in links]
    expected = list(range(case_rows[0].global_seq, checkpoint.global_seq + 1))
    if [link.global_seq for link in chain] != expected:
        raise ValueError(f"links must be global rows {expected[0]}..{expected[-1]} in order, each once")
    bundle = AuditBundle(
        format=BUNDLE_FORMAT,
        case_id=case_id,
        traces=list(traces),
        case_rows=list(case_rows),
        links=chain,
        checkpoint=checkpoint,
        public_key_pem=public_key_pem(public_key),
    )
    return bundle.model_dump(mode="json")


def bundle_bytes(document: Mapping[str, Any]) -> bytes:
    """The bundle file: canonical JSON and a newline. Canonical, so that every byte counts: any
    other spelling of the same content (a changed space, an escaped letter) is refused as edited."""
    return canonical_json(dict(document)) + b"\n"


def parse_bundle(data: bytes, *, what: str = "bundle") -> AuditBundle:
    """A bundle file's contents, refused with AuditInputError (one line) unless it is exactly
    the canonical JSON an exporter writes, in the bundle format."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise AuditInputError(f"{what} is {len(data)} bytes, over the {MAX_BUNDLE_BYTES // (1024 * 1024)} MiB limit")
    value = _decode_json(data, what=what)
    _check_format(value, BUNDLE_FORMAT, what=what)
    try:
        canonical = canonical_json(value)
    except AuditInputError as err:
        raise AuditInputError(f"{what}: {err}") from None
    if data not in (canonical, canonical + b"\n"):
        raise AuditInputError(
            f"{what} is not byte for byte as exported (canonical JSON): it was edited or reformatted; verify the exported file"
        )
    try:
        bundle = AuditBundle.model_validate_json(canonical, strict=True)
    except ValidationError as err:
        raise AuditInputError(f"{what}: {_first_error(err)}") from None
    key = load_public_key_pem(bundle.public_key_pem, what=f"{what}'s public_key_pem")
    if public_key_pem(key) != bundle.public_key_pem:
        raise AuditInputError(f"{what}'s public_key_pem is not spelled as exported: it was edited")
    return bundle


def verify_bundle(
    document: bytes | Mapping[str, Any] | AuditBundle, *, trusted_public_key: Ed25519PublicKey | None = None
) -> AuditReport:
    """Check a bundle offline: the case's chain, its place in the global chain up to the signed
    checkpoint, the signature, and each trace against its newest trace event. Bytes are parsed
    with `parse_bundle` (AuditInputError when they are not a bundle); a dict is taken as parsed."""
    if isinstance(document, AuditBundle):
        bundle = document
    elif isinstance(document, bytes | bytearray):
        bundle = parse_bundle(bytes(document))
    else:
        bundle = parse_bundle(bundle_bytes(document))
    problems: list[str] = []
    notes: list[str] = []
    bundle_key = load_public_key_pem(bundle.public_key_pem, what="the bundle's public_key_pem")
    checking_key = bundle_key
    if trusted_public_key is not None:
        if key_id(trusted_public_key) != key_id(bundle_key) or public_key_pem(trusted_public_key) != public_key_pem(bundle_key):
            problems.append(
                f"the bundle's public key ({key_id(bundle_key)}) is not the trusted public key ({key_id(trusted_public_key)})"
            )
        checking_key = trusted_public_key
        notes.append(f"checkpoint checked against the trusted public key {key_id(trusted_public_key)}")
    else:
        notes.append(
            f"checkpoint checked against the bundle's own public key {key_id(bundle_key)}: this shows the bundle is intact, "
            "not who signed it; pass --public-key with the key you trust"
        )
    try:
        verify_checkpoint(bundle.checkpoint, checking_key)
    except CheckpointInvalid as err:
        problems.append(str(err))

    case_report = verify_chain(bundle.case_rows, scope=AuditScope.case(bundle.case_id), traces=bundle.traces)
    problems.extend(case_report.problems)
    if not bundle.case_rows:
        problems.append(f"the bundle holds no rows of case {bundle.case_id!r}")
    else:
        problems.extend(_link_problems(bundle))
    for record in bundle.traces:
        if record.case_id != bundle.case_id:
            problems.append(f"trace {record.trace_id} is of case {record.case_id!r}, not the bundle's case {bundle.case_id!r}")
    return AuditReport(
        ok=not problems,
        problems=problems[:MAX_PROBLEMS],
        notes=notes,
        rows_checked=len(bundle.links),
        cases_checked=1,
        traces_checked=case_report.traces_checked,
        head=bundle.checkpoint.head,
    )


def _link_problems(bundle: AuditBundle) -> Iterator[str]:
    """The case's rows sit in the global chain, and the chain runs unbroken to the signed head."""
    first, checkpoint = bundle.case_rows[0], bundle.checkpoint
    links = bundle.links
    expected = range(first.global_seq, checkpoint.global_seq + 1)
    if [link.global_seq for link in links] != list(expected):
        yield (
            f"links must be global rows {first.global_seq}..{checkpoint.global_seq} (the case's first row to the checkpoint's), "
            "each once, in order: rows are missing, extra or reordered"
        )
        return
    by_seq = {link.global_seq: link for link in links}
    for row in bundle.case_rows:
        link = by_seq.get(row.global_seq)
        if link is None or (link.entry_hash, link.row_hash) != (row.entry_hash, row.row_hash):
            yield f"{_where(row)}: the chain proof's global row {row.global_seq} is not this row"
            return
    previous = first.global_prev
    for link in links:
        if hash_row(global_seq=link.global_seq, global_prev=previous, entry_hash=link.entry_hash) != link.row_hash:
            yield f"chain proof breaks at global row {link.global_seq}: its row_hash does not follow from the row before it"
            return
        previous = link.row_hash
    if previous != checkpoint.row_hash:
        yield f"the chain proof ends at row_hash {previous[:16]}…, not the checkpoint's {checkpoint.row_hash[:16]}…"


# ---------------------------------------------------------------------------------------------- parsing helpers


def _decode_json(data: bytes, *, what: str) -> Any:
    """Strict JSON from a file: UTF-8, no duplicate keys, no NaN; one-line errors."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise AuditInputError(f"{what} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})") from None
    if not text.strip():
        raise AuditInputError(f"{what} is empty; expected a JSON object")
    try:
        return json.loads(text, object_pairs_hook=_without_duplicates, parse_constant=_refuse_constant, parse_int=json_number)
    except AuditInputError as err:
        raise AuditInputError(f"{what}: {err}") from None
    except json.JSONDecodeError as err:
        raise AuditInputError(f"{what} is not JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except RecursionError:
        raise AuditInputError(f"{what} is nested too deeply to be a {what}") from None
    except ValueError as err:
        raise AuditInputError(f"{what} is not JSON: {str(err)[:120]}") from None


def _without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise AuditInputError(f"duplicate key {json.dumps(key)[:80]}")
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise AuditInputError(f"{name} is not a JSON number")


def _check_format(value: Any, expected: str, *, what: str) -> None:
    if not isinstance(value, dict):
        raise AuditInputError(f"{what} is a JSON {type(value).__name__}, not an object with format {expected!r}")
    found = value.get("format")
    if found != expected:
        shown = "no format field" if found is None else f"format {json.dumps(found)[:60]}"
        raise AuditInputError(f"{what} has {shown}; expected format {expected!r}")


def _first_error(err: ValidationError) -> str:
    """Pydantic's first complaint as one line: where, then what."""
    errors = err.errors(include_url=False, include_context=False, include_input=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "value"
    message = {"missing": "missing", "extra_forbidden": "is not a field of this format"}.get(first["type"], first["msg"])
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{where}: {message}"[:240] + more
