# ruff: noqa: F811  (the fixtures are imported from faultkit, then requested by name)
"""Cluster-wide flow control (``oban_py.flow``) across real ``oban-py start`` processes: a global
limit never exceeded at any instant, capacity of a killed node back within the ttl, a rate
limit that no window ever exceeds while reaching most of the allowed rate, partitions, and
``oban-py queues`` reporting what the nodes use together."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import psycopg
import pytest
from faultkit import (  # noqa: F401
    OBAN_PY,
    fault_dsn,
    insert_jobs,
    nodes,
    states,
    wait_started,
    wait_until,
)

#: The ttl of every node here (FAST in faultkit).
TTL = 2.0


@pytest.fixture
def spans_dsn(fault_dsn: str) -> str:
    with psycopg.connect(fault_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE fault_spans (job_id bigint PRIMARY KEY, node text NOT NULL,"
            " account text, started_at timestamptz NOT NULL, ended_at timestamptz)"
        )
    return fault_dsn


def most_at_once(conn: psycopg.Connection[Any], account: bool = False) -> dict[Any, int]:
    """The largest number of spans (per account, or in all) running at any one instant."""
    group = "s.account" if account else "''"
    cur = conn.execute(
        f"SELECT {group}, max(c.n) FROM fault_spans AS s CROSS JOIN LATERAL ("
        "  SELECT count(*) AS n FROM fault_spans AS o"
        "  WHERE o.started_at <= s.started_at"
        "    AND coalesce(o.ended_at, 'infinity') > s.started_at"
        f"   AND {group.replace('s.', 'o.')} IS NOT DISTINCT FROM {group}"
        ") AS c GROUP BY 1"
    )
    return dict(cur.fetchall())


def test_four_nodes_never_run_more_than_the_global_limit_at_once(
    spans_dsn: str, nodes: Any
) -> None:
    with psycopg.connect(spans_dsn, autocommit=True) as conn:
        insert_jobs(conn, "Faults.Span", 500, args='{"ms": 15}')
        started = [nodes("default:10:global=3", f"py-flow-{n}") for n in range(4)]
        for node in started:
            wait_started(node)
        wait_until(lambda: states(conn) == {"completed": 500}, 90, 0.2)
        assert most_at_once(conn) == {"": 3}, "never more than 3, and the limit was reached"
        ran_on = conn.execute("SELECT count(DISTINCT node) FROM fault_spans").fetchone()
        assert ran_on == (4,), "every node took its share"


def test_a_killed_node_gives_its_capacity_back_within_the_ttl(spans_dsn: str, nodes: Any) -> None:
    with psycopg.connect(spans_dsn, autocommit=True) as conn:
        held = insert_jobs(conn, "Faults.Span", 3, args='{"ms": 60000}')
        holder = nodes("default:10:global=3", "py-holder", OBAN_PEER="false")
        wait_started(holder)
        wait_until(lambda: states(conn) == {"executing": 3}, 15, 0.05)
        other = nodes("default:10:global=3", "py-other", OBAN_PEER="false")
        wait_started(other)
        waiting = insert_jobs(conn, "Faults.Span", 3, args='{"ms": 10}')
        time.sleep(1.0)
        assert states(conn).get("completed", 0) == 0, "no capacity left while the holder lives"
        holder.kill()
        killed_at = time.monotonic()
        wait_until(
            lambda: (
                conn.execute(
                    "SELECT count(*) FROM oban_jobs WHERE id = ANY(%s) AND state = 'completed'",
                    (waiting,),
                ).fetchone()
                == (3,)
            ),
            TTL + 5,
            0.05,
        )
        assert time.monotonic() - killed_at < TTL + 5
        assert conn.execute(
            "SELECT count(*) FROM oban_jobs WHERE id = ANY(%s) AND state = 'executing'", (held,)
        ).fetchone() == (3,), "the dead node's rows are the lifeline's, not run twice"


def test_a_rate_limit_holds_in_every_window_and_reaches_most_of_the_rate(
    spans_dsn: str, nodes: Any
) -> None:
    with psycopg.connect(spans_dsn, autocommit=True) as conn:
        insert_jobs(conn, "Faults.Span", 600, args='{"ms": 1}')
        started = [nodes("default:10:rate=20/2", f"py-rate-{n}") for n in range(4)]
        for node in started:
            wait_started(node)
        time.sleep(12)  # six windows
        for node in started:
            node.kill()
        # A start is the claim, stamped by the database in attempted_at (the worker's own
        # record comes later by however long its connection took).
        busiest = conn.execute(
            "WITH s AS (SELECT attempted_at AS at FROM oban_jobs WHERE attempted_at IS NOT NULL)"
            " SELECT max(c.n) FROM s CROSS JOIN LATERAL ("
            "  SELECT count(*) AS n FROM s AS o"
            "  WHERE o.at >= s.at AND o.at < s.at + interval '2 seconds') AS c"
        ).fetchone()
        assert busiest is not None
        assert busiest[0] <= 20, f"a 2 s window held {busiest[0]} starts"
        row = conn.execute(
            "SELECT count(*), extract(epoch FROM max(attempted_at) - min(attempted_at))"
            " FROM oban_jobs WHERE attempted_at IS NOT NULL"
        ).fetchone()
        assert row is not None
        count, seconds = row
        rate = count / max(float(seconds), 1.0)
        assert rate >= 0.8 * 20 / 2, f"{count} starts in {seconds:.1f} s"


def test_partitions_hold_each_account_to_its_limit_and_every_account_progresses(
    spans_dsn: str, nodes: Any
) -> None:
    with psycopg.connect(spans_dsn, autocommit=True) as conn:
        # The heavy account's jobs come first in the queue's order: it must not starve the rest.
        conn.execute(
            "INSERT INTO oban_jobs (queue, worker, args)"
            " SELECT 'default', 'Faults.Span', jsonb_build_object('account_id', 'heavy', 'ms', 30)"
            " FROM generate_series(1, 200)"
        )
        conn.execute(
            "INSERT INTO oban_jobs (queue, worker, args)"
            " SELECT 'default', 'Faults.Span',"
            "   jsonb_build_object('account_id', 'a' || (n % 4), 'ms', 30)"
            " FROM generate_series(1, 40) AS n"
        )
        spec = "default:10:global=2:global_by=args.account_id"
        started = [nodes(spec, f"py-part-{n}") for n in range(2)]
        for node in started:
            wait_started(node)
        wait_until(
            lambda: (
                conn.execute(
                    "SELECT count(DISTINCT account) FROM fault_spans WHERE account <> 'heavy'"
                ).fetchone()
                == (4,)
            ),
            20,
            0.1,
        )
        wait_until(lambda: states(conn) == {"completed": 240}, 90, 0.2)
        peaks = most_at_once(conn, account=True)
        assert set(peaks) == {"heavy", "a0", "a1", "a2", "a3"}
        assert max(peaks.values()) <= 2, peaks


def test_oban_py_queues_reports_what_the_nodes_use_together_per_partition(
    spans_dsn: str, nodes: Any
) -> None:
    with psycopg.connect(spans_dsn, autocommit=True) as conn:
        # Two per account across the cluster, two per node: each node runs two of the four.
        for account in ("a", "b"):
            insert_jobs(conn, "Faults.Span", 3, args=f'{{"account_id": "{account}", "ms": 60000}}')
        spec = "default:2:global=2:global_by=args.account_id:rate=100/60"
        started = [nodes(spec, f"py-seen-{n}", OBAN_PEER="false") for n in range(2)]
        for node in started:
            wait_started(node)
        wait_until(lambda: states(conn).get("executing") == 4, 15, 0.05)
        listed = subprocess.run(
            [str(OBAN_PY), "queues", "--json", "--wait", "2", "--dsn", spans_dsn],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert listed.returncode == 0, listed.stderr
    checks = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted((c["node"], len(c["running"])) for c in checks) == [
        ("py-seen-0", 2),
        ("py-seen-1", 2),
    ]
    glob, rate = checks[0]["flow_usage"]
    assert glob == {
        "limit": "global",
        "allowed": 2,
        "used": 4,
        "period": None,
        "partitions": {'account_id="a"': 2, 'account_id="b"': 2},
    }
    assert (rate["used"], rate["allowed"], rate["partitions"]) == (4, 100, {"": 4})
