"""A Prefect server of its own for tests that stop and start it (the session's test server
cannot be restarted): `prefect server start` on a free port, with its own PREFECT_HOME."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.smtp import free_port


class PrefectServerProcess:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.log = home / "prefect-server.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180) -> float:
        """Start it (again, on the same port and database); returns seconds until healthy."""
        self.home.mkdir(parents=True, exist_ok=True)
        env = os.environ | {
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        env.pop("PREFECT_API_URL", None)
        prefect = Path(sys.executable).parent / "prefect"
        started = time.monotonic()
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while time.monotonic() - started < timeout:
            if self._proc.poll() is not None:
                raise RuntimeError(f"prefect server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"prefect server not healthy after {timeout}s")

    def stop(self) -> None:
        """Kill the server's whole process group at once, as a crash or an OOM kill would."""
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._proc.wait(timeout=30)
        self._proc = None
