"""The validated configuration of an ``Oban`` instance.

Defaults follow Elixir Oban where a Python node shares a database with Elixir nodes, and depart
from it only where the docs say why (pruner on by default, a distinct peer name, per-process
node names).
"""

from __future__ import annotations

import os
import socket
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from oban_py.job import MAX_NAME_LENGTH


def default_node() -> str:
    # One node name per process: two processes sharing a name would share leadership and
    # each other's signals (oban-py#32 ran cron three times on one host that way).
    return f"{socket.gethostname()}.{os.getpid()}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QueueConfig(_Model):
    limit: Annotated[int, Field(gt=0, le=10_000)] = 10
    paused: bool = False


class PrunerConfig(_Model):
    enabled: bool = True
    # A day: long enough to inspect results. Beside an Elixir pruner the shorter max_age wins.
    max_age: Annotated[float, Field(gt=0)] = 86_400.0
    interval: Annotated[float, Field(gt=0)] = 30.0
    limit: Annotated[int, Field(gt=0)] = 10_000


class LifelineConfig(_Model):
    enabled: bool = True
    # Elixir's default: a time-based rescue must not take back a long job that is still running.
    rescue_after: Annotated[float, Field(gt=0)] = 3_600.0
    interval: Annotated[float, Field(gt=0)] = 15.0
    # Producers of this library beat every heartbeat_interval; one silent for heartbeat_ttl is
    # dead and its executing jobs are rescued at once.
    heartbeat_interval: Annotated[float, Field(gt=0)] = 5.0
    heartbeat_ttl: Annotated[float, Field(gt=0)] = 30.0
    # Rows of dead producers are kept this long so their uuids stay known as Python's.
    heartbeat_retention: Annotated[float, Field(gt=0)] = 86_400.0


class Config(_Model):
    dsn: str | None = None
    #: The Elixir instance name used in signal idents (``Oban.<node>``); keep Elixir's default.
    name: Annotated[str, Field(min_length=1)] = "Oban"
    node: Annotated[str, Field(min_length=1)] = Field(default_factory=default_node)
    prefix: Annotated[str, Field(min_length=1, max_length=63)] = "public"
    queues: dict[str, QueueConfig] = Field(default_factory=dict)
    #: Leadership row name in oban_peers; distinct from Elixir's so Elixir keeps its own leader.
    peer_name: str | None = None
    peer: bool = True
    #: Leadership lease in seconds (Elixir's 30 s); the leader renews at about half of it.
    peer_interval: Annotated[float, Field(gt=0)] = 30.0
    pool_size: Annotated[int, Field(gt=0)] = 10
    poll_interval: Annotated[float, Field(gt=0)] = 1.0
    shutdown_grace: Annotated[float, Field(ge=0)] = 15.0
    stage_interval: Annotated[float, Field(gt=0)] = 1.0
    stage_limit: Annotated[int, Field(gt=0)] = 5_000
    pruner: PrunerConfig = Field(default_factory=PrunerConfig)
    lifeline: LifelineConfig = Field(default_factory=LifelineConfig)
    crontab: list[Any] = Field(default_factory=list)
    timezone: str = "Etc/UTC"
    gossip: bool = True
    gossip_interval: Annotated[float, Field(gt=0)] = 1.0
    sonar_interval: Annotated[float, Field(gt=0)] = 15.0
    #: What the node logs through structlog once started: ``failures`` (failed attempts, jobs
    #: cut off by a shutdown, failed plugin passes), ``all`` (every job and pass) or ``off``.
    default_logger: Literal["failures", "all", "off"] = "failures"

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
