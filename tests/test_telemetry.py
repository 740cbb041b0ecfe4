"""Telemetry dispatch: routes per event name are cached, and attach/detach always take effect."""

from __future__ import annotations

from typing import Any

from oban_py import telemetry


def test_a_handler_attached_after_an_event_was_routed_receives_the_next_one() -> None:
    seen: list[tuple[str, str]] = []

    def handler(name: str) -> Any:
        return lambda event, measurements, metadata: seen.append((name, event))

    telemetry.attach("test.routes.a", "test.routes.ping", handler("a"))
    try:
        telemetry.execute("test.routes.ping", {}, {})
        telemetry.attach("test.routes.b", "test.routes.*", handler("b"))
        telemetry.execute("test.routes.ping", {}, {})
        telemetry.detach("test.routes.a")
        telemetry.execute("test.routes.ping", {}, {})
        telemetry.attach("test.routes.b", "test.routes.other", handler("b2"))  # replaced
        telemetry.execute("test.routes.ping", {}, {})
        telemetry.execute("test.routes.other", {}, {})
    finally:
        telemetry.detach("test.routes.a")
        telemetry.detach("test.routes.b")
    assert seen == [
        ("a", "test.routes.ping"),
        ("a", "test.routes.ping"),
        ("b", "test.routes.ping"),
        ("b", "test.routes.ping"),
        ("b2", "test.routes.other"),
    ]


def test_event_names_invented_per_call_do_not_grow_the_route_cache() -> None:
    telemetry.attach("test.routes.any", "test.many.*", lambda e, m, md: None)
    try:
        for n in range(5_000):
            telemetry.execute(f"test.many.{n}", {}, {})
        assert len(telemetry._routes) <= telemetry._MAX_ROUTES
    finally:
        telemetry.detach("test.routes.any")
