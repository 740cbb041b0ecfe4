"""Waiting on the event loop without losing a cancellation.

``asyncio.wait_for`` on Python 3.11 returns normally when a cancellation arrives just as what it
waits for completes (CPython gh-86296): the cancel is swallowed, and a duty or producer being
stopped goes on looping while its stopper waits for it for ever. ``asyncio.timeout`` has no
such race, so every timed wait of the runtime goes through it.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float) -> bool:  # noqa: ASYNC109
    """Wait until ``event`` is set, at most ``timeout`` seconds; True when it was set."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
