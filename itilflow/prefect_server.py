"""`prefect server start` on asyncio's event loop and h11, whatever else is installed.

uvicorn's default ("auto") takes uvloop and httptools when they are importable, and Prefect's
`server start` leaves it at that. itilflow installs both for its gateway alone (gateway/server.py
asks for them by name): the Prefect server keeps the stack's tested loop and parser, so this
module points uvicorn's "auto" at them before handing over to Prefect's command line.
`itilflow up` and `itilflow prefect-server` (the systemd unit) start the server through it.

    python -m itilflow.prefect_server server start --host 127.0.0.1 --port 4200
"""

from __future__ import annotations

import uvicorn.config


def pin_asyncio_and_h11() -> None:
    """uvicorn's "auto" loop and HTTP protocol, in this process: asyncio and h11."""
    uvicorn.config.LOOP_FACTORIES["auto"] = uvicorn.config.LOOP_FACTORIES["asyncio"]
    uvicorn.config.HTTP_PROTOCOLS["auto"] = uvicorn.config.HTTP_PROTOCOLS["h11"]


def main() -> None:
    pin_asyncio_and_h11()
    from prefect.cli import app

    app()


if __name__ == "__main__":
    main()
