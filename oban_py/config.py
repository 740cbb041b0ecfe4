"""The validated configuration of an ``Oban`` instance.

Defaults follow Elixir Oban where a Python node shares a database with Elixir nodes, and depart
from it only where the docs say why (pruner on by default, a distinct peer name, per-process
node names).
"""

from __future__ import annotations

import os
import socket
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from oban_py.job.model import MAX_NAME_LENGTH


def default_node() -> str:
    # One node name per process: two processes sharing a name would share leadership and
    # each other's signals (oban-py#32 ran cron three times on one host that way).
    return f"{socket.gethostname()}.{os.getpid()}"


class _Model(BaseModel):
    # Attribute docstrings become field descriptions: docs/configuration.md is generated from
    # them, so the reference cannot drift from the model.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _worker_field() -> list[Literal["worker", "args"]]:
    return ["worker"]


def _not_bool(value: Any) -> Any:
    # Pydantic takes True for 1: `global_limit=True` would quietly allow one job at a time.
    if isinstance(value, bool):
        raise ValueError(f"takes a number, not a bool ({value!r})")
    return value


NoBool = BeforeValidator(_not_bool)


class Partition(_Model):
    """Which jobs share a limit: those of one worker, of equal values of some args keys, or
    both (Oban Pro's ``partition: [fields: ..., keys: ...]``)."""

    fields: list[Literal["worker", "args"]] = Field(default_factory=_worker_field)
    """What tells partitions apart: ``worker``, ``args`` (the values of ``keys``), or both."""
    keys: list[str] = Field(default_factory=list)
    """The args keys whose values name a partition (``["account_id"]``); all args when empty.
    They apply to ``args``, which ``fields`` must then hold."""

    @model_validator(mode="after")
    def _fields_tell_partitions_apart(self) -> Partition:
        if not self.fields:
            raise ValueError(
                'partition fields must name at least one of "worker" and "args"; for no'
                " partitions leave partition out"
            )
        if len(set(self.fields)) != len(self.fields):
            raise ValueError(f"partition fields {self.fields} name a field twice")
        # Oban Pro's keys select args: without "args" among the fields they would do nothing.
        if self.keys and "args" not in self.fields:
            raise ValueError(
                f"partition keys {self.keys} apply to args, but fields are {self.fields}:"
                f' add "args" (fields ["args"] or ["worker", "args"])'
            )
        return self


class GlobalLimit(_Model):
    allowed: Annotated[int, NoBool, Field(gt=0, le=100_000)]
    """Jobs of the queue executing at once across every Python node (per partition if any)."""
    partition: Partition | None = None
    """Apply the limit to each partition instead of the whole queue."""


class RateLimit(_Model):
    allowed: Annotated[int, NoBool, Field(gt=0, le=1_000_000)]
    """Jobs of the queue started at most in any ``period`` seconds, across every Python node."""
    period: Annotated[float, NoBool, Field(gt=0, le=86_400)]
    """The sliding window, in seconds."""
    partition: Partition | None = None
    """Apply the rate to each partition instead of the whole queue."""


class QueueConfig(_Model):
    limit: Annotated[int, NoBool, Field(gt=0, le=10_000)] = 10
    """Jobs of this queue running at once on this node (``queues={"mailers": 10}`` sets it)."""
    paused: bool = False
    """Start the queue paused: it fetches nothing until resumed (``oban-py resume``)."""
    global_limit: GlobalLimit | None = None
    """Cluster-wide concurrency (``{"allowed": 3}``): enforced in PostgreSQL among Python
    nodes; Elixir nodes on the same queue keep their own limits (docs/flow-control.md)."""
    rate_limit: RateLimit | None = None
    """Cluster-wide starts per sliding window (``{"allowed": 100, "period": 60}``)."""
    processes: Annotated[int, NoBool, Field(gt=0, le=10_000)] | None = None
    """Worker processes for this queue's ``executor="process"`` workers; ``None``: as many as
    its limit (see the Processes page)."""

    @field_validator("global_limit", mode="before")
    @classmethod
    def _bare_global(cls, value: Any) -> Any:
        # A bool too, so that `allowed` refuses it by name.
        return {"allowed": value} if isinstance(value, int) else value


class PrunerConfig(_Model):
    enabled: bool = True
    """Delete finished jobs (on the leader). Elixir's pruner is off unless configured."""
    # A day: long enough to inspect results. Beside an Elixir pruner the shorter max_age wins.
    max_age: Annotated[float, Field(gt=0)] = 86_400.0
    """Seconds a completed, cancelled or discarded job is kept."""
    interval: Annotated[float, Field(gt=0)] = 30.0
    """Seconds between pruning passes."""
    limit: Annotated[int, Field(gt=0)] = 10_000
    """Rows deleted at most per pass."""


class LifelineConfig(_Model):
    enabled: bool = True
    """Rescue jobs left ``executing`` by dead nodes (on the leader)."""
    # Elixir's default: a time-based rescue must not take back a long job that is still running.
    rescue_after: Annotated[float, Field(gt=0)] = 3_600.0
    """Seconds after which an ``executing`` job whose producer is not beating is rescued
    (Elixir's time-based rescue, limited to queues Python nodes run)."""
    interval: Annotated[float, Field(gt=0)] = 15.0
    """Seconds between lifeline passes (a node's own shutdown releases its jobs at once)."""
    # Producers of this library beat every heartbeat_interval; one silent for heartbeat_ttl is
    # dead and its executing jobs are rescued at once.
    heartbeat_interval: Annotated[float, Field(gt=0)] = 5.0
    """Seconds between the liveness beats of this node's producers (written from a thread of
    their own, so a blocked event loop does not stop them)."""
    heartbeat_ttl: Annotated[float, Field(gt=0)] = 30.0
    """Seconds of silence after which a Python producer is dead and its jobs are rescued. A
    node that could not write its beat for half of it stops and releases its jobs first."""
    # Rows of dead producers are kept this long so their uuids stay known as Python's.
    heartbeat_retention: Annotated[float, Field(gt=0)] = 86_400.0
    """Seconds the beat rows of dead producers are kept."""

    @model_validator(mode="after")
    def _beats_fit_the_ttl(self) -> LifelineConfig:
        # A node that wrote no beat for ttl / 2 gives up its jobs (liveness.py): at least two
        # beats must fit in that half, or a healthy node would stop its own jobs between two.
        if self.heartbeat_interval * 3 > self.heartbeat_ttl:
            raise ValueError(
                f"lifeline.heartbeat_interval ({self.heartbeat_interval:g} s) must be at most a"
                f" third of lifeline.heartbeat_ttl ({self.heartbeat_ttl:g} s): a node that wrote"
                " no beat for half the ttl stops its jobs, so a longer interval would make a"
                " healthy node interrupt its own jobs; raise heartbeat_ttl or lower the interval"
            )
        return self


class Config(_Model):
    dsn: str | None = None
    """PostgreSQL connection string (``postgresql://user:pass@host/db`` or ``key=value``);
    ``Oban(pool=...)`` may give a pool instead."""
    notifier_dsn: str | None = None
    """A DSN for the node's LISTEN connection alone, when ``dsn`` goes through a transaction
    pooler (where LISTEN does not work): PostgreSQL directly, or a session pool; ``None`` uses
    ``dsn`` (or the pool's)."""
    # The Elixir instance name used in signal idents (``Oban.<node>``); keep Elixir's default.
    name: Annotated[str, Field(min_length=1)] = "Oban"
    """Instance name: registered for ``get_instance`` and ``Worker.enqueue``, and Elixir's
    ``name`` in signal idents (``Oban.<node>``)."""
    node: Annotated[str, Field(min_length=1)] = Field(default_factory=default_node)
    """This node's name in ``attempted_by``, leadership and signals; one per process."""
    prefix: Annotated[str, Field(min_length=1, max_length=63)] = "public"
    """PostgreSQL schema holding the Oban tables."""
    queues: dict[str, QueueConfig] = Field(default_factory=dict)
    """Queues this node runs: ``{"mailers": 10}`` or ``{"mailers": {"limit": 10, "paused":
    true}}``; none makes an insert-and-duties-only node."""
    # Leadership row name in oban_peers; distinct from Elixir's so Elixir keeps its own leader.
    peer_name: str | None = None
    """Leadership row name in ``oban_peers``; ``None`` means ``"<name>.py"``, apart from
    Elixir's so Elixir keeps its own leader."""
    peer: bool = True
    """Take part in leadership (leaders run cron, pruner, lifeline and staging)."""
    # Leadership lease in seconds (Elixir's 30 s); the leader renews at about half of it.
    peer_interval: Annotated[float, Field(gt=0)] = 30.0
    """Leadership lease in seconds (Elixir's); the leader renews it at about half."""
    pool_size: Annotated[int, Field(gt=0)] = 10
    """Connections in the node's pool (the notifier holds one more of its own)."""
    poll_interval: Annotated[float, Field(gt=0)] = 1.0
    """Seconds between fetches of an idle producer when no notification woke it."""
    shutdown_grace: Annotated[float, Field(ge=0)] = 15.0
    """Seconds running jobs get to finish on ``stop()``; then async jobs are cancelled and
    released, the worker processes of process jobs killed and their jobs released, and plain
    ``def`` jobs (whose threads cannot be stopped) are waited for."""
    process_max_jobs: Annotated[int, Field(gt=0)] | None = None
    """Jobs a worker process runs before it is replaced by a fresh one (Celery's
    ``max_tasks_per_child``); ``None``: never."""
    process_max_memory: Annotated[int, Field(gt=0)] | None = None
    """MiB of peak resident memory after which a worker process is replaced once its job
    ends (Celery's ``max_memory_per_child``); ``None``: never."""
    stage_interval: Annotated[float, Field(gt=0)] = 1.0
    """Seconds between passes making due scheduled and retryable jobs available."""
    stage_limit: Annotated[int, Field(gt=0)] = 5_000
    """Jobs staged at most per pass."""
    pruner: PrunerConfig = Field(default_factory=PrunerConfig)
    """Deleting old finished jobs (a mapping of the fields below, or ``PrunerConfig``)."""
    lifeline: LifelineConfig = Field(default_factory=LifelineConfig)
    """Rescuing orphaned jobs (a mapping of the fields below, or ``LifelineConfig``)."""
    crontab: list[Any] = Field(default_factory=list)
    """Periodic jobs: ``(expr, worker)``, ``(expr, worker, opts)`` or mappings with ``expr``,
    ``worker``, ``args``, ``queue``, ``priority``, ``max_attempts``, ``tags``, ``meta``,
    ``timezone``."""
    timezone: str = "Etc/UTC"
    """Timezone of crontab expressions without one of their own."""
    web: bool = True
    """Publish what Oban Web reads through oban_met: job metrics (``metrics``), the crontab
    (``cronitor``) and queue check-ins (``gossip``). ``False`` turns all three off."""
    gossip: bool = True
    """Publish queue check-ins on the ``gossip`` channel (``oban-py queues``, Oban Web)."""
    gossip_interval: Annotated[float, Field(gt=0)] = 1.0
    """Seconds between gossip check-ins."""
    stall_threshold: Annotated[float, Field(ge=0)] = 1.0
    """Seconds the event loop may go without running before the watchdog logs which workers
    run and where the loop is stuck (``0``: never)."""
    flow_usage_interval: Annotated[float, Field(gt=0)] = 5.0
    """Seconds between readings of what each flow-limited queue uses of its cluster-wide limits
    (the ``oban.flow.usage`` telemetry event, the Prometheus gauges); read only while a handler
    listens for that event."""
    sonar_interval: Annotated[float, Field(gt=0)] = 15.0
    """Seconds between sonar pings, which tell whether notifications reach this node."""
    default_logger: Literal["failures", "all", "off"] = "failures"
    """What the node logs through structlog once started: ``failures`` (failed attempts, jobs
    cut off by a shutdown, failed plugin passes), ``all`` (every job and pass) or ``off``."""
    discard_unknown_workers: bool = False
    """Discard at once a job whose worker this node cannot resolve, instead of retrying it
    with backoff as Elixir does (a job for a worker deployed later would then be lost)."""

    @field_validator("queues", mode="before")
    @classmethod
    def _queue_specs(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {q: {"limit": v} if isinstance(v, int) else v for q, v in value.items()}
        return value

    @field_validator("queues")
    @classmethod
    def _queue_names(cls, value: dict[str, QueueConfig]) -> dict[str, QueueConfig]:
        for queue in value:
            # The same rule as Job's, so every job that can be inserted can be run.
            if not queue.strip() or len(queue) > MAX_NAME_LENGTH:
                raise ValueError(f"queue name {queue!r} must be 1..127 characters, not blank")
        return value

    @model_validator(mode="after")
    def _default_peer_name(self) -> Config:
        if self.peer_name is None:
            object.__setattr__(self, "peer_name", f"{self.name}.py")
        return self

    @property
    def ident(self) -> str:
        """How Elixir addresses this node in signals: ``inspect(name) <> "." <> node``."""
        return f"{self.name}.{self.node}"

    @property
    def leader_name(self) -> str:
        assert self.peer_name is not None
        return self.peer_name
