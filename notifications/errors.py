"""The one error the senders raise, and the bridge from the sync twins to the async senders."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class NotificationError(RuntimeError):
    """A notification was not delivered (or could not be routed); retrying may help."""


def run_sync(coroutine: Coroutine[Any, Any, None], name: str) -> None:
    """Run an async sender to completion from synchronous code.

    asyncio.run() cannot nest inside a running loop; say which async twin to await instead of
    leaving the caller with asyncio's generic message.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coroutine)
        return
    coroutine.close()  # never awaited: close it so Python does not warn about it
    raise RuntimeError(f"{name}() was called from a running event loop; await a{name}() instead")
