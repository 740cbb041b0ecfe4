"""An ack that meets a transient database error is retried promptly and written in full.

Only data the database cannot store is degraded (``outcomes.degraded``: the error text and the
recorded result dropped). A read-only server, a cancelled statement, a serialization failure, a
deadlock, an admin shutdown or too many connections say nothing about the data: the same ack,
with its error entry and its recorded result, must land once the server takes it.
"""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from nodekit import insert, row, wait_state

from oban_py import Oban, Record
from oban_py.job.model import Job
from oban_py.worker import Worker


class Fails(Worker):
    name = "Py.Transient.Fails"

    def backoff(self, job: Job) -> float:
        return 600.0

    async def process(self, job: Job) -> None:
        raise ValueError("the worker's own error text")


class Records(Worker):
    name = "Py.Transient.Records"

    async def process(self, job: Job) -> Record:
        return Record({"kept": True})


FAIL_FIRST_ACKS = """
CREATE SEQUENCE ack_attempts;
CREATE FUNCTION fail_first_acks() RETURNS trigger AS $$
BEGIN
  -- nextval is not rolled back with the failed statement: only the first {times} acks fail.
  IF OLD.state = 'executing' AND NEW.state <> 'executing'
     AND nextval('ack_attempts') <= {times} THEN
    RAISE EXCEPTION 'transient failure' USING ERRCODE = '{code}';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER fail_first_acks BEFORE UPDATE ON oban_jobs
  FOR EACH ROW EXECUTE FUNCTION fail_first_acks();
"""


def fail_first_acks(code: str, times: int) -> bytes:
    return FAIL_FIRST_ACKS.replace("{code}", code).replace("{times}", str(times)).encode()


@pytest.mark.parametrize(
    "code",
    [
        "25006",  # read_only_sql_transaction: a failover left the connection on a demoted server
        "57014",  # query_canceled: statement_timeout
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "57P01",  # admin_shutdown
        "53300",  # too_many_connections
    ],
)
async def test_a_transient_error_on_an_ack_is_retried_with_the_full_ack(
    dsn: str, conn: Any, code: str
) -> None:
    await conn.execute(fail_first_acks(code, 2))
    failed = await insert(conn, Fails.name, queue="acks")
    recorded = await insert(conn, Records.name, queue="acks")
    oban = Oban(dsn=dsn, peer=False, queues={"acks": 5}, poll_interval=0.05, node="py-ack")
    with structlog.testing.capture_logs() as logs:
        async with oban:
            await wait_state(conn, failed, "retryable")
            await wait_state(conn, recorded, "completed")
    attempts = await (await conn.execute("SELECT last_value FROM ack_attempts")).fetchone()
    assert attempts[0] >= 3, "the trigger failed the first acks"
    [entry] = (await row(conn, failed))["errors"]
    assert "the worker's own error text" in entry["error"]
    assert "Oban.AckError" not in entry["error"]
    meta = (await row(conn, recorded))["meta"]
    assert meta["recorded"] is True
    assert "return" in meta
    events = [e["event"] for e in logs]
    assert not [e for e in events if e.startswith("ack refused")]
    # A run of failures is one warning, however many retries it took; a cancelled statement
    # is told by the smaller batch it leads to, once.
    retries = [e["log_level"] for e in logs if e["event"] == "ack batch failed, retrying"]
    shrunk = [e["log_level"] for e in logs if e["event"].startswith("statement cancelled")]
    assert (shrunk if code == "57014" else retries)[0] == "warning"
    assert retries.count("warning") + shrunk.count("warning") == 1


async def test_a_program_limit_on_an_ack_is_refused_data_not_an_outage(dsn: str, conn: Any) -> None:
    # psycopg calls SQLSTATE class 54 (an index row too large, too many arguments) an
    # OperationalError; retrying it unchanged would never store it, so it is degraded.
    await conn.execute(fail_first_acks("54000", 1))
    failed = await insert(conn, Fails.name, queue="acks")
    async with Oban(dsn=dsn, peer=False, queues={"acks": 5}, poll_interval=0.05):
        await wait_state(conn, failed, "retryable")
    [entry] = (await row(conn, failed))["errors"]
    assert entry["error"].startswith("** (Oban.AckError)")
