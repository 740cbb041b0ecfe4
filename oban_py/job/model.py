"""``Job``: one row of ``oban_jobs``, validated when an application builds it.

Values follow Elixir's ``Oban.Job.new/2``: state ``available`` (``scheduled`` when a schedule is
given, as Elixir does even for a time in the past), attempt 0, max_attempts 20, priority 0, empty
meta, tags and errors. The database stores naive UTC timestamps; a ``Job`` holds aware UTC ones.
Rows read back from the database go through ``Job.from_row`` without re-validation.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime, timedelta
from math import isfinite
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from oban_py import telemetry
from oban_py.job import jsonb, terms
from oban_py.job.progress import Progress, ProgressSink, StopReason, check
from oban_py.job.shared import EMPTY_DICT, EMPTY_LIST, own_fields_set, own_when_read
from oban_py.job.unique import Unique, coerce_replace

#: Elixir's ``Oban.Job`` defaults, the one table of them: the model's fields, its direct build,
#: the planner's "was this column set" test and a cron entry's fallbacks all read it. (Ecto puts
#: only values that differ from the struct's in ``changes``, and ``replace`` takes changes.)
JOB_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "args": {},
        "max_attempts": 20,
        "meta": {},
        "priority": 0,
        "queue": "default",
        "scheduled_at": None,
        "tags": [],
    }
)
#: Ids given to jobs run without a row (``perform_job``, inline testing): far above any table's,
#: so code that logs or stores ``job.id`` works, and nothing mistakes them for a row.
ROWLESS_IDS_FROM = 9_000_000_000_000_000_001
#: The DB check is ``0 < char_length < 128``; Elixir's changeset allows 128, which the DB rejects.
MAX_NAME_LENGTH = 127
COLUMNS = (
    "id",
    "state",
    "queue",
    "worker",
    "args",
    "errors",
    "attempt",
    "max_attempts",
    "inserted_at",
    "scheduled_at",
    "attempted_at",
    "completed_at",
    "attempted_by",
    "discarded_at",
    "priority",
    "tags",
    "meta",
    "cancelled_at",
)
_TIMESTAMPS = (
    "inserted_at",
    "scheduled_at",
    "attempted_at",
    "completed_at",
    "discarded_at",
    "cancelled_at",
)


def to_utc(value: datetime) -> datetime:
    """Aware UTC; a naive value is taken to be UTC already (as the database stores it)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def to_naive_utc(value: datetime | None) -> datetime | None:
    """The database form of a timestamp: naive UTC."""
    if value is None:
        return None
    return to_utc(value).replace(tzinfo=None)


def _json_object(value: Any, field: str) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if not isinstance(value, Mapping):
        raise ValueError(f"{field} must be a JSON object (a dict), got {type(value).__name__}")
    return _json_copy(value, field)


def _json_copy(value: Mapping[str, Any], field: str) -> dict[str, Any]:
    plain = _plain_copy(value)
    if plain is not None:
        return plain
    copy: dict[str, Any] = dict(value)
    try:
        # Round-trip so the job holds exactly what the database will (tuples → lists ...);
        # through jsonb so wide integers and out-of-range numbers stay exact.
        dumped = jsonb.dumps(copy)
    except TypeError as error:
        raise ValueError(f"{field} must serialise to JSON: {error}") from None
    if _flat(copy):
        # Text keys and plain scalars read back as they are: the serialising alone checked it.
        return copy
    result: dict[str, Any] = jsonb.loads(dumped)
    return result


def _plain_copy(value: Mapping[str, Any]) -> dict[str, Any] | None:
    """The copy of ``value`` that ``_json_copy`` makes, when orjson writes it as it stands (no
    integer beyond 64 bits, no ``Decimal``, nothing it refuses); else None, and ``_json_copy``
    decides. The one check of almost every job's args, so kept to the bare calls."""
    copy: dict[str, Any] = dict(value)
    if _as_is(copy):
        return copy
    try:
        dumped = orjson.dumps(copy)
    except TypeError:
        return None
    if not _flat(copy):
        # Lists, nested objects, subclasses, NaN and infinities: read back as the database
        # holds them. Plain scalars read back as they are: the serialising checked them.
        result: dict[str, Any] = jsonb.loads(dumped)
        return result
    return copy


def _as_is(value: dict[Any, Any]) -> bool:
    """Whether orjson writes ``value`` as it stands and reads it back equal, without asking it:
    ASCII text keys, and values that are None, bools, integers of 64 bits, finite floats or
    ASCII text (lone surrogates, which it refuses, are not ASCII). Serialising a job's args
    only to check them cost a fifth of ``Worker.new``."""
    for key, item in value.items():
        kind = item.__class__
        if kind is int:
            if not _INT_MIN <= item <= _INT_MAX:
                return False
        elif kind is str:
            if not item.isascii():
                return False
        elif kind is float:
            if not isfinite(item):
                return False
        elif kind is not bool and item is not None:
            return False
        if key.__class__ is not str or not key.isascii():
            return False
    return True


def _flat(value: dict[Any, Any]) -> bool:
    for key, item in value.items():
        kind = item.__class__
        if key.__class__ is not str or kind not in _SCALARS:
            return False
        if kind is float and not math.isfinite(item):
            return False
    return True


class Job(BaseModel):
    """A job: the columns of ``oban_jobs`` plus insert options (``unique``, ``replace``)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=False)

    id: int | None = None
    state: str = "available"
    queue: str = JOB_DEFAULTS["queue"]
    worker: str
    args: dict[str, Any] = Field(default_factory=dict)
    errors: list[dict[str, Any]] = Field(default_factory=list)
    attempt: int = Field(default=0, ge=0)
    max_attempts: int = JOB_DEFAULTS["max_attempts"]
    inserted_at: datetime | None = None
    scheduled_at: datetime | None = None
    attempted_at: datetime | None = None
    completed_at: datetime | None = None
    attempted_by: list[str] | None = None
    discarded_at: datetime | None = None
    priority: int = JOB_DEFAULTS["priority"]
    tags: list[str] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)
    cancelled_at: datetime | None = None

    #: Insert options, never stored in the row.
    unique: Unique | None = None
    replace: dict[str, tuple[str, ...]] | None = None
    schedule_in: float | None = Field(default=None, exclude=True)
    #: Set on the job returned by a unique insert that found an existing job.
    conflict: bool = False

    _cancelled: bool = PrivateAttr(default=False)
    _stop_reason: StopReason | None = PrivateAttr(default=None)
    _typed_args: Any = PrivateAttr(default=None)
    #: (the scheduled_at ``schedule_in`` gave, the delay in microseconds): see ``schedule_delay``
    _scheduled_in: tuple[datetime, int] | None = PrivateAttr(default=None)
    #: where ``progress`` reports go while a node runs the job (None: kept on the job only)
    _progress_sink: ProgressSink | None = PrivateAttr(default=None)
    _progress_seq: int = PrivateAttr(default=0)
    #: the prefix of the node running this attempt (for ``complete_in``)
    _prefix: str | None = PrivateAttr(default=None)

    if not TYPE_CHECKING:  # the checker keeps the signature pydantic derives from the fields

        def __init__(self, /, **data: Any) -> None:
            # Most jobs are built from a name, a queue and plain args: set those directly, as
            # the validators would, and leave every other input to pydantic. A single enqueue
            # spent a sixth of its time here otherwise.
            if data.keys() <= _FAST_FIELDS and _fast_init(self, data):
                return
            super().__init__(**data)

    @field_validator("worker", mode="before")
    @classmethod
    def _worker_name(cls, value: Any) -> Any:
        name = getattr(value, "__oban_name__", None)
        if isinstance(value, type) and isinstance(name, str):
            return name
        return value

    @field_validator("worker", "queue")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        if len(value) > MAX_NAME_LENGTH:
            raise ValueError(f"must be at most {MAX_NAME_LENGTH} characters, got {len(value)}")
        return value

    @field_validator("priority")
    @classmethod
    def _priority(cls, value: int) -> int:
        if not 0 <= value <= 9:
            raise ValueError(f"must be between 0 and 9, got {value}")
        return value

    @field_validator("max_attempts")
    @classmethod
    def _max_attempts(cls, value: int) -> int:
        if value <= 0:
            raise ValueError(f"must be greater than 0, got {value}")
        return value

    @field_validator("args", "meta", mode="before")
    @classmethod
    def _objects(cls, value: Any, info: Any) -> dict[str, Any]:
        return _json_object(value, info.field_name)

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> list[str]:
        if isinstance(value, str) or not hasattr(value, "__iter__"):
            raise ValueError("must be a list of strings")
        cleaned = {str(tag).strip().lower() for tag in value}
        return sorted(tag for tag in cleaned if tag)

    @field_validator(*_TIMESTAMPS)
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else to_utc(value)

    @field_validator("unique", mode="before")
    @classmethod
    def _unique(cls, value: Any) -> Unique | None:
        return Unique.coerce(value)

    @field_validator("replace", mode="before")
    @classmethod
    def _replace(cls, value: Any) -> dict[str, tuple[str, ...]] | None:
        return coerce_replace(value)

    @field_validator("schedule_in", mode="before")
    @classmethod
    def _schedule_in(cls, value: Any) -> Any:
        if isinstance(value, timedelta):
            return value.total_seconds()
        return value

    @model_validator(mode="after")
    def _schedule(self) -> Job:
        if self.schedule_in is not None:
            if "scheduled_at" in self.model_fields_set:
                raise ValueError("give either schedule_in or scheduled_at, not both")
            delay = timedelta(seconds=self.schedule_in)
            self.scheduled_at = datetime.now(UTC) + delay
            self._scheduled_in = (self.scheduled_at, delay // _MICROSECOND)
            self.schedule_in = None
        if self.scheduled_at is not None and self.id is None and self.state == "available":
            self.state = "scheduled"
        return self

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        """Build from a database row (a mapping of column → value) without validation.

        Naive timestamps are UTC; ISO strings (as in ``row_to_json``) are parsed.
        """
        # The runtime builds one Job per fetched row: filling ``__dict__`` directly is several
        # times cheaper than ``model_construct`` and yields the same instance (fields not in the
        # row take their defaults, ``model_fields_set`` lists the columns given).
        values = _ROW_DEFAULTS.copy()
        if row.keys() == _COLUMN_SET:
            # A claimed row (RETURNING j.*): every column and nothing else, laid over at once.
            values.update(row)
            given: AbstractSet[str] = _COLUMNS_GIVEN
        else:
            picked = set()
            for key in COLUMNS:
                if key in row:
                    values[key] = row[key]
                    picked.add(key)
            given = picked
        last_aware = _LAST_AWARE
        for key in _TIMESTAMPS:
            value = values[key]
            if value is not None:
                if value.__class__ is datetime and value.tzinfo is None:
                    # The rows of one claim share their attempted_at (the claim's clock), and
                    # jobs inserted together their inserted_at and scheduled_at: the aware time
                    # made for the previous row is reused when equal (datetimes are immutable),
                    # a third of the cost of ``replace``.
                    last = last_aware.get(key)
                    if last is not None and last[0] == value:
                        values[key] = last[1]
                    else:
                        aware = value.replace(tzinfo=UTC)
                        last_aware[key] = (value, aware)
                        values[key] = aware
                else:
                    if isinstance(value, str):
                        value = datetime.fromisoformat(value)
                    values[key] = to_utc(value)
        if values["args"] is None:
            values["args"] = {}
        if values["meta"] is None:
            values["meta"] = EMPTY_DICT
        for key in ("errors", "tags"):
            if values[key] is None:
                values[key] = EMPTY_LIST
        state = values["state"]
        if state.__class__ is not str:
            values["state"] = str(state)
        job = cls.__new__(cls)
        return _filled(job, values, given)

    def _set_private(self, **values: Any) -> None:
        # The node binds every claimed job (its prefix, its progress sink): one dict update
        # costs a fraction of pydantic's __setattr__ for each attribute.
        private = self.__pydantic_private__
        if private is None:
            for name, value in values.items():
                setattr(self, name, value)
        else:
            private.update(values)

    def stored(self, job_id: int, inserted_at: datetime, scheduled_at: datetime) -> Job:
        """The row an insert of this job stored, given the columns the server chose.

        Equal to ``from_row`` of ``RETURNING *``: the inserted columns as this job holds them
        (args and meta were round-tripped through JSON when it was built), every other column
        at its table default. Shares no mutable value with this job.
        """
        job = _unsaved(self.__dict__)
        values = job.__dict__
        values["id"] = job_id
        values["inserted_at"] = inserted = _aware(inserted_at)
        # Unscheduled jobs (most) are scheduled at their insert time: one conversion, not two.
        values["scheduled_at"] = inserted if scheduled_at == inserted_at else _aware(scheduled_at)
        return job

    def to_row(self) -> dict[str, Any]:
        """The stored columns, JSON-ready, exactly as ``row_to_json`` renders the row."""
        row: dict[str, Any] = {}
        for key in COLUMNS:
            value = getattr(self, key)
            if key in _TIMESTAMPS and value is not None:
                value = _json_timestamp(to_naive_utc(value))  # type: ignore[arg-type]
            row[key] = value
        return row

    def __getstate__(self) -> dict[Any, Any]:
        # A job crosses process boundaries (pickled): the node's progress writer stays behind
        # (a worker process sends its reports up its pipe instead, ``node/processes.py``).
        state: dict[Any, Any] = super().__getstate__()
        private = state.get("__pydantic_private__")
        if private and private.get("_progress_sink") is not None:
            state["__pydantic_private__"] = {**private, "_progress_sink": None}
        return state

    def cancelled(self) -> bool:
        """True once the job is asked to stop while running; long work should check it and
        stop. ``stop_reason`` says why, and so what to return (see docs/workers.md)."""
        return self._cancelled

    @property
    def stop_reason(self) -> StopReason | None:
        """Why ``cancelled()`` is true: ``"cancel"`` (an operator cancelled the job),
        ``"shutdown"`` (the node is stopping), ``"fenced"`` (the node lost its heartbeat) or
        ``"timeout"`` (the worker's timeout elapsed); None while the job may go on."""
        return self._stop_reason

    def _cancel(self, reason: StopReason | None = None) -> None:
        # Plain attribute writes are atomic under the GIL, so worker threads can poll them. The
        # reason is written first: a worker that sees cancelled() also sees why.
        if reason is not None:
            self._stop_reason = reason
        self._cancelled = True

    @property
    def recorded(self) -> Any:
        """The value the job recorded (``Record`` here, or an Elixir worker's recorded return),
        decoded from ``meta.return``; None when it recorded nothing. Elixir atoms decode to
        ``terms.Atom`` (a ``str``), tuples to tuples. Raises ``terms.TermError`` when the
        stored value is not a readable term."""
        meta = self.meta
        if not isinstance(meta, dict) or meta.get("recorded") is not True:
            return None
        raw = meta.get("return")
        if not isinstance(raw, str):
            raise terms.TermError("meta.recorded is true but meta.return is not a string")
        return terms.decode_recorded(raw)

    @property
    def last_progress(self) -> Progress | None:
        """The last progress the job reported (``meta.progress``), or None."""
        meta = self.meta
        return Progress.from_meta(meta.get("progress")) if isinstance(meta, dict) else None

    async def progress(self, value: float, *, note: str | None = None) -> None:
        """Report progress (0..1, and a note) from inside ``async def process``.

        Stored in ``meta.progress`` and announced to watchers (``oban.watch``), at most once per
        ``oban_py.results.progress.INTERVAL`` per job: a tight loop costs no more writes, and
        the latest report always lands. Emits ``oban.job.progress``. Never raises for a
        database problem (progress is advisory); raises ``ValueError`` for a bad value.
        """
        self._report(value, note, threadsafe=False)

    def progress_sync(self, value: float, *, note: str | None = None) -> None:
        """``progress`` from a plain ``def process`` (its worker thread): does not block."""
        self._report(value, note, threadsafe=True)

    def _report(self, value: float, note: str | None, *, threadsafe: bool) -> None:
        value, note = check(value, note)
        self._progress_seq += 1
        report = Progress(value, note, datetime.now(UTC), self.attempt, self._progress_seq)
        self._reported(report, threadsafe=threadsafe)

    def _forwarded(self, report: Progress) -> None:
        """A report the job's worker process made (``node/processes.py``), taken in the node as
        if this job had made it: stored on the job, emitted, handed to the node's writer."""
        self._progress_seq = max(self._progress_seq, report.seq)
        self._reported(report, threadsafe=False)

    def _reported(self, report: Progress, *, threadsafe: bool) -> None:
        value, note = report.value, report.note
        if isinstance(self.meta, dict):
            self.meta["progress"] = report.to_meta()
        if telemetry.listening("oban.job.progress"):
            telemetry.execute(
                "oban.job.progress",
                {"value": value},
                {
                    "job": self,
                    "id": self.id,
                    "worker": self.worker,
                    "queue": self.queue,
                    "note": note,
                    "attempt": self.attempt,
                    "seq": report.seq,
                },
            )
        sink = self._progress_sink
        if sink is not None:
            if threadsafe:
                sink.report_threadsafe(self, report)
            else:
                sink.report(self, report)

    @property
    def typed_args(self) -> Any:
        """The args as the worker's ``args_model`` (set by ``Worker.build_args``), else ``args``."""
        return self.args if self._typed_args is None else self._typed_args


# The fast builds below share empty values and given-field sets among jobs (``job.shared``).
own_when_read(Job, "meta", "tags", "errors")
own_fields_set(Job)


def _filled(job: Job, values: dict[str, Any], fields: AbstractSet[str]) -> Job:
    """``job`` (made by ``__new__``) holding ``values``, with ``fields`` given: what pydantic
    makes, without its validation, for the paths that build thousands of jobs (rows read,
    jobs inserted, plain builds). The slots are set through their own descriptors, half the
    cost of ``object.__setattr__``. ``fields`` may be a frozenset shared by many jobs: each
    job copies it when first read (``Job.__pydantic_fields_set__``)."""
    _SET_DICT(job, values)
    _SET_FIELDS(job, fields)
    _SET_EXTRA(job, None)
    _SET_PRIVATE(job, _PRIVATE_DEFAULTS.copy())
    return job


def _valid_name(value: Any) -> bool:
    return value.__class__ is str and 0 < len(value) <= MAX_NAME_LENGTH and not value.isspace()


def _fast_init(job: Job, data: dict[str, Any]) -> bool:
    """Fill ``job`` from ``data`` when every value is of the exact plain type the validators
    accept unchanged; False (``job`` untouched) for anything else, which pydantic then checks
    and reports. Must build what ``Job.model_validate(data)`` builds."""
    worker = data.get("worker")
    queue = data.get("queue", JOB_DEFAULTS["queue"])
    priority = data.get("priority", JOB_DEFAULTS["priority"])
    max_attempts = data.get("max_attempts", JOB_DEFAULTS["max_attempts"])
    if not (_valid_name(worker) and _valid_name(queue)):
        return False
    if priority.__class__ is not int or not 0 <= priority <= 9:
        return False
    if max_attempts.__class__ is not int or max_attempts <= 0:
        return False
    values = _ROW_DEFAULTS.copy()
    try:
        for key, empty in (("args", {}), ("meta", EMPTY_DICT)):
            value = data.get(key)
            if value is None:
                if key in data:
                    return False
                values[key] = empty
            elif value.__class__ is dict:
                values[key] = _json_copy(value, key)
            else:
                return False
    except ValueError:
        return False
    tags = data.get("tags")
    if tags is None:
        if "tags" in data:
            return False
        values["tags"] = EMPTY_LIST
    elif tags.__class__ in (list, tuple) and all(tag.__class__ is str for tag in tags):
        values["tags"] = Job._tags(tags)
    else:
        return False
    values["worker"] = worker
    values["queue"] = queue
    values["priority"] = priority
    values["max_attempts"] = max_attempts
    values["errors"] = EMPTY_LIST
    _filled(job, values, set(data))
    return True


class Template:
    """The fields every job of one worker shares (its name and default options), validated
    once: ``build(args)`` makes what ``Job(**options, args=args)`` makes, checking only the
    args. ``Worker.new`` spent most of its time validating the same options again."""

    __slots__ = ("_fields", "_mutable", "_values", "options")

    def __init__(self, options: Mapping[str, Any], **fields: Any) -> None:
        #: what the template was made of (its owner compares it to know it is current)
        self.options = options
        # Raises for options a job could not have, as the build of every job would.
        shared = Job(**options, **fields)
        values = dict(shared.__dict__)
        self._fields = frozenset(shared.model_fields_set | {"args"})
        #: whether the options hold values each job must have a copy of (most workers: none)
        self._mutable = bool(values["meta"] or values["tags"] or values["replace"] is not None)
        if not self._mutable:
            values["meta"] = EMPTY_DICT
            values["tags"] = EMPTY_LIST
        values["errors"] = EMPTY_LIST
        self._values = values

    def build(self, args: dict[str, Any]) -> Job | None:
        """A job with ``args``; None (nothing built) for args the full validation must see:
        those it refuses, with its error, and the rare ones it converts."""
        copied = _plain_copy(args)
        if copied is None:
            return None
        values = self._values.copy()
        values["args"] = copied
        # The job owns its mutable values, as one validated on its own would (the empty ones
        # it shares until read: ``job.shared``).
        if self._mutable:
            meta, tags, replace = values["meta"], values["tags"], values["replace"]
            values["meta"] = _copy_json(meta) if meta else EMPTY_DICT
            values["tags"] = list(tags) if tags else EMPTY_LIST
            if replace is not None:
                values["replace"] = dict(replace)
        # ``_filled``, inline: this runs once per job an application builds.
        job = Job.__new__(Job)
        _SET_DICT(job, values)
        _SET_FIELDS(job, self._fields)
        _SET_EXTRA(job, None)
        _SET_PRIVATE(job, _PRIVATE_DEFAULTS.copy())
        return job


def prepare_stored(chunks: Sequence[Sequence[Job]]) -> list[list[Job]]:
    """The jobs an INSERT of each chunk of jobs stores, but for the columns the server chooses
    (id, inserted_at, and scheduled_at when not given; ``finish_stored`` sets them). Built while
    the server runs the statements, this work overlaps their round trip."""
    # Thousands of new tracked objects trigger the cyclic collector over and over, each pass
    # walking every live job (half the cost of building a 20,000-job result), and every tenth
    # pass of the middle generation may start a pass over the whole heap. None of these objects
    # forms a cycle, so collection is deferred to the end of the loop (over every chunk: one
    # pass after, not one a chunk), which runs without yielding to other tasks.
    paused = sum(map(len, chunks)) > _GC_PAUSE_AT and gc.isenabled()
    if paused:
        gc.disable()
    try:
        return [[_unsaved(job.__dict__) for job in chunk] for chunk in chunks]
    finally:
        if paused:
            gc.enable()


def _unsaved(mine: dict[str, Any]) -> Job:
    """The row an insert of the job whose fields are ``mine`` stores, but for the columns the
    server chooses: the inserted columns as the job holds them (args and meta were round-tripped
    through JSON when it was built), every other column at its table default, sharing no
    mutable value with the job. Filled directly, as ``from_row`` does: it runs once per
    inserted job."""
    values = _ROW_DEFAULTS.copy()
    values["state"] = mine["state"]
    values["queue"] = mine["queue"]
    values["worker"] = mine["worker"]
    values["max_attempts"] = mine["max_attempts"]
    values["priority"] = mine["priority"]
    values["args"] = _copy_json(mine["args"])
    meta, tags = mine["meta"], mine["tags"]
    values["meta"] = _copy_json(meta) if meta else EMPTY_DICT
    values["tags"] = list(tags) if tags else EMPTY_LIST
    values["errors"] = EMPTY_LIST
    values["scheduled_at"] = mine["scheduled_at"]
    return _filled(Job.__new__(Job), values, _COLUMNS_GIVEN)


def finish_stored(
    prepared: list[Job],
    ids: Sequence[int],
    now: datetime,
    inserted_ats: Sequence[datetime] | None = None,
) -> list[Job]:
    """Set the server-chosen columns of ``prepare_stored`` jobs: their ids, in order, and the
    statement's time: the scheduled time of those sent without one, and the insert time of all
    (or each its own from ``inserted_ats``, when a changed column default gave them other)."""
    aware = _aware(now)
    for n, (job, job_id) in enumerate(zip(prepared, ids, strict=True)):
        values = job.__dict__
        values["id"] = job_id
        values["inserted_at"] = aware if inserted_ats is None else _aware(inserted_ats[n])
        if values["scheduled_at"] is None:
            values["scheduled_at"] = aware
    return prepared


#: Every field of a row-built job before the row's columns are laid over it; the mutable
#: defaults are replaced per job (``from_row`` never shares them: they are overwritten or None).
_ROW_DEFAULTS: dict[str, Any] = {
    name: (None if field.is_required() or field.default_factory else field.default)
    for name, field in Job.model_fields.items()
}
_PRIVATE_DEFAULTS: dict[str, Any] = {
    name: attr.get_default() for name, attr in Job.__private_attributes__.items()
}


#: per timestamp column, the last naive time ``from_row`` read and the aware time it made; one
#: tuple per key, replaced whole, so a reader in another thread sees a consistent pair
_LAST_AWARE: dict[str, tuple[datetime, datetime]] = {}

_SET_DICT = BaseModel.__dict__["__dict__"].__set__
_SET_FIELDS = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_SET_EXTRA = BaseModel.__dict__["__pydantic_extra__"].__set__
_SET_PRIVATE = BaseModel.__dict__["__pydantic_private__"].__set__
_FAST_FIELDS = frozenset({"worker", "queue", "args", "meta", "priority", "max_attempts", "tags"})
_SCALARS = (str, int, float, bool, type(None))
#: the integers orjson writes (beyond them ``jsonb`` does, exactly)
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_COLUMN_SET = set(COLUMNS)
#: the given fields of a job holding every column, shared until one job's is read
_COLUMNS_GIVEN = frozenset(COLUMNS)
_GC_PAUSE_AT = 1_000


def _copy_json(value: dict[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    # Flat objects of JSON scalars (the usual args) need no round trip to be a faithful copy.
    for item in value.values():
        if item.__class__ not in _SCALARS:
            result: dict[str, Any] = jsonb.loads(jsonb.dumps(value))
            return result
    return dict(value)


def _json_timestamp(value: datetime) -> str:
    # PostgreSQL's JSON drops trailing zeros of the fraction (.96725, not .967250) and the
    # whole fraction when it is zero; isoformat() always writes six digits.
    return value.isoformat().rstrip("0").rstrip(".") if value.microsecond else value.isoformat()


def schedule_delay(job: Job) -> int | None:
    """Microseconds after the database's now that ``job`` is to run, when it was built with
    ``schedule_in`` and its ``scheduled_at`` is still the one that gave; else ``None``.

    ``scheduled_at`` is set from this process's clock when the job is built, so that it can be
    read before the insert; the insert computes it again from the database's clock, which the
    stager compares it with, so that a client whose clock is off schedules no earlier or later.
    """
    scheduled_at = job.__dict__["scheduled_at"]
    if scheduled_at is None:
        # Most jobs; read before the private attribute, which pydantic looks up slowly.
        return None
    given = job._scheduled_in
    if given is None or scheduled_at != given[0]:
        return None
    return given[1]


_MICROSECOND = timedelta(microseconds=1)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else to_utc(value)
