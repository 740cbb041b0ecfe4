"""What each database error means (``oban_py.dberrors``), error class by error class.

Every error below is raised by the real server in the situation that causes it in production
(a read-only session, a statement timeout, a terminated session, a real deadlock, a real
serialization failure, a lock timeout, a refused row), then classified.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import psycopg
import pytest
import structlog
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from oban_py import dberrors
from oban_py.dberrors import CANCELLED, READ_ONLY, REFUSED, TRANSIENT, Batch, classify


def raised(dsn: str, *statements: str) -> BaseException:
    """The error the last of ``statements`` raises on one fresh session."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements[:-1]:
            conn.execute(statement.encode())
        with pytest.raises(psycopg.Error) as info:
            conn.execute(statements[-1].encode())
    return info.value


# -- transient: retried unchanged -----------------------------------------------------------


def test_a_write_on_a_read_only_session_is_read_only(dsn: str) -> None:
    error = raised(
        dsn,
        "SET default_transaction_read_only = on",
        "UPDATE oban_jobs SET state = state WHERE false",
    )
    assert isinstance(error, psycopg.errors.ReadOnlySqlTransaction)
    assert classify(error) is READ_ONLY
    assert classify(error).retry


def test_a_statement_timeout_is_a_cancellation(dsn: str) -> None:
    error = raised(dsn, "SET statement_timeout = '20ms'", "SELECT pg_sleep(2)")
    assert isinstance(error, psycopg.errors.QueryCanceled)
    assert classify(error) is CANCELLED


def test_a_terminated_session_is_transient(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as victim, psycopg.connect(dsn) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (victim.info.backend_pid,))
        with pytest.raises(psycopg.OperationalError) as info:
            victim.execute("SELECT 1")
    assert classify(info.value) is TRANSIENT


def test_a_deadlock_is_transient(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE pair (id int PRIMARY KEY, n int)")
        conn.execute("INSERT INTO pair VALUES (1, 0), (2, 0)")
    first, second = psycopg.connect(dsn), psycopg.connect(dsn)
    errors: list[BaseException] = []
    both_locked = threading.Barrier(2)

    def cross(conn: psycopg.Connection[Any], mine: int, theirs: int) -> None:
        try:
            conn.execute("UPDATE pair SET n = n + 1 WHERE id = %s", (mine,))
            both_locked.wait(5)
            conn.execute("UPDATE pair SET n = n + 1 WHERE id = %s", (theirs,))
            conn.commit()
        except psycopg.Error as error:
            errors.append(error)
            conn.rollback()

    threads = [
        threading.Thread(target=cross, args=(first, 1, 2)),
        threading.Thread(target=cross, args=(second, 2, 1)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    first.close()
    second.close()
    [error] = errors
    assert isinstance(error, psycopg.errors.DeadlockDetected)
    assert classify(error) is TRANSIENT


def test_a_serialization_failure_is_transient(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE doctors (name text PRIMARY KEY, on_call bool)")
        conn.execute("INSERT INTO doctors VALUES ('a', true), ('b', true)")
    first, second = psycopg.connect(dsn), psycopg.connect(dsn)
    for conn in (first, second):
        conn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        conn.execute("SELECT count(*) FROM doctors WHERE on_call")
    first.execute("UPDATE doctors SET on_call = false WHERE name = 'a'")
    second.execute("UPDATE doctors SET on_call = false WHERE name = 'b'")
    first.commit()
    with pytest.raises(psycopg.Error) as info:
        second.commit()
    first.close()
    second.close()
    assert isinstance(info.value, psycopg.errors.SerializationFailure)
    assert classify(info.value) is TRANSIENT


def test_a_lock_timeout_is_transient(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE held (id int PRIMARY KEY)")
        conn.execute("INSERT INTO held VALUES (1)")
    with psycopg.connect(dsn) as holder:
        holder.execute("SELECT * FROM held FOR UPDATE")
        error = raised(dsn, "SET lock_timeout = '20ms'", "UPDATE held SET id = 1")
    assert isinstance(error, psycopg.errors.LockNotAvailable)
    assert classify(error) is TRANSIENT


def test_too_many_connections_is_transient(dsn: str, server_dsn: str) -> None:
    database = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    # Roles are server-wide: a name of this test's own, as concurrent runs share the server.
    role = f"oban_dberrors_plain_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} CONNECTION LIMIT 0").format(sql.Identifier(str(database)))
        )
        # A superuser is exempt from the database limit; a plain role is not.
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        with pytest.raises(psycopg.OperationalError) as info:
            psycopg.connect(dsn, user=role)
        assert "too many connections" in str(info.value)
        assert classify(info.value) is TRANSIENT
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("ALTER DATABASE {} CONNECTION LIMIT -1").format(
                    sql.Identifier(str(database))
                )
            )
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_errors_without_a_sqlstate_are_told_by_their_type() -> None:
    assert classify(PoolTimeout("couldn't get a connection after 30 s")) is TRANSIENT
    assert classify(psycopg.OperationalError("server closed the connection")) is TRANSIENT
    assert classify(psycopg.InterfaceError("the connection is closed")) is TRANSIENT
    assert classify(ConnectionResetError()) is TRANSIENT
    # Parameters that cannot be sent, or a bug: the same thing fails the same way again.
    assert classify(TypeError("not adaptable")) is REFUSED
    assert classify(psycopg.ProgrammingError("bad parameters")) is REFUSED


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        ("57P01", TRANSIENT),  # admin_shutdown
        ("57P03", TRANSIENT),  # cannot_connect_now
        ("53300", TRANSIENT),  # too_many_connections
        ("53100", TRANSIENT),  # disk_full
        ("40P01", TRANSIENT),  # deadlock_detected
        ("08006", TRANSIENT),  # connection_failure
        ("25006", READ_ONLY),
        ("57014", CANCELLED),
        ("23514", REFUSED),  # check_violation
        ("22P02", REFUSED),  # invalid_text_representation
        ("54000", REFUSED),  # program_limit_exceeded
        ("P0001", REFUSED),  # raise_exception
        ("XX000", REFUSED),  # internal_error
    ],
)
def test_the_table_by_sqlstate_as_the_server_sends_it(
    dsn: str, code: str, verdict: dberrors.Verdict
) -> None:
    # RAISE with the code is the server sending exactly that SQLSTATE, whatever the cause.
    error = raised(dsn, f"DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '{code}'; END $$")
    assert error.sqlstate == code
    assert classify(error) is verdict


# -- refused: the data itself --------------------------------------------------------------


def test_data_the_database_cannot_store_is_refused(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE wide (v text, CHECK (v <> 'no'))")
        conn.execute("CREATE INDEX wide_v ON wide (v)")
        cases = [
            ("INSERT INTO wide VALUES ('no')", psycopg.errors.CheckViolation),
            ("SELECT 'x'::int", psycopg.errors.InvalidTextRepresentation),
            ("SELECT 2147483647::int + 1", psycopg.errors.NumericValueOutOfRange),
            # An index row past the btree maximum: psycopg calls it an OperationalError, yet
            # retrying it for ever would never store it.
            (
                "INSERT INTO wide"
                " SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) AS g",
                psycopg.errors.ProgramLimitExceeded,
            ),
        ]
        for statement, kind in cases:
            with pytest.raises(kind) as info:
                conn.execute(statement.encode())
            assert classify(info.value) is REFUSED, statement


# -- what a node does with them ----------------------------------------------------------------


async def test_a_read_only_error_drains_the_pool_once_and_logs_one_line(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dberrors, "_last_read_only", float("-inf"))  # a new episode
    async with AsyncConnectionPool(dsn, min_size=2, max_size=2, open=False) as pool:
        await pool.open(wait=True)
        async with pool.connection() as conn:
            before = conn.info.backend_pid
        error = psycopg.errors.ReadOnlySqlTransaction("cannot execute UPDATE")
        with structlog.testing.capture_logs() as logs:
            for _ in range(5):
                assert await dberrors.recover(pool, error) is READ_ONLY
        assert [e["log_level"] for e in logs if "read-only" in e["event"]] == ["warning"]
        await pool.wait()
        async with pool.connection() as conn:
            assert conn.info.backend_pid != before


async def test_a_pool_check_refuses_a_connection_to_a_read_only_session(dsn: str) -> None:
    async with AsyncConnectionPool(
        dsn, min_size=1, max_size=1, open=False, check=dberrors.check_writable
    ) as pool:
        await pool.open(wait=True)
        async with pool.connection() as conn:
            await conn.execute("SET default_transaction_read_only = on")
            stale = conn.info.backend_pid
        async with pool.connection() as conn:
            assert conn.info.backend_pid != stale
            await conn.execute("CREATE TABLE written (id int)")


def test_a_batch_halves_on_cancellation_down_to_its_floor_and_grows_back_slowly() -> None:
    batch = Batch(5_000, floor=100, name="stage")
    with structlog.testing.capture_logs() as logs:
        sizes = []
        for _ in range(8):
            batch.cancelled()
            sizes.append(batch.size)
    assert sizes == [2_500, 1_250, 625, 312, 156, 100, 100, 100]
    assert [e["log_level"] for e in logs if e["event"].startswith("statement cancelled")] == [
        "warning",
        *["debug"] * 7,
    ]
    assert batch.limit(30) == 30
    assert batch.limit() == 100
    grown = []
    for _ in range(40):
        batch.succeeded()
        grown.append(batch.size)
    # Slowly: a few successes per step, a quarter more each step.
    assert grown[:5] == [100, 100, 100, 100, 125]
    assert grown == sorted(grown)
    while batch.shrunk:
        batch.succeeded()
    assert batch.size == 5_000


def test_a_shrunk_batch_that_came_back_full_paces_the_next_pass_to_keep_the_rate() -> None:
    batch = Batch(5_000, name="stage")
    assert batch.pace(1.0, 5_000) == 1.0
    batch.cancelled()
    assert batch.pace(1.0, 2_500) == 0.5
    assert batch.pace(1.0, 10) == 1.0  # no backlog: the usual interval


async def test_an_outage_is_one_warning_then_debug_lines_then_one_recovery_line() -> None:
    log = structlog.get_logger("test")
    outage = dberrors.Outage(log, "fetch failed", queue="q")
    with structlog.testing.capture_logs() as logs:
        for _ in range(10):
            outage.failed(psycopg.OperationalError("gone"))
            await asyncio.sleep(0)
        outage.succeeded()
        outage.succeeded()
    levels = [e["log_level"] for e in logs]
    assert levels == ["warning", *["debug"] * 9, "info"]
    # A refusal does not heal by waiting: it stays a warning each time.
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            outage.failed(psycopg.errors.UndefinedTable("no oban_jobs"))
    assert [e["log_level"] for e in logs] == ["warning"] * 3


async def test_a_node_pool_refuses_read_only_sessions_but_a_plain_client_may_read_one(
    dsn: str, server_dsn: str
) -> None:
    from oban_py import Client, Oban

    database = sql.Identifier(str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]))
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(database)
        )
    try:
        # A replica is fine to read jobs from (a dashboard, `oban-py jobs`).
        async with Client(dsn=dsn, name="reader") as reader:
            assert await reader.get_job(1) is None
        node = Oban(dsn=dsn, name="writer")
        assert node.pool._check is dberrors.check_writable
        assert reader.pool._check is None
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(database)
            )
