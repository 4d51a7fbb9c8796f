"""Real peers for the inspection tests: Debian's node_exporter and Prometheus on free loopback
ports, a local HTTP server, a TLS server whose certificate is about to expire, a closed port."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
PROMETHEUS = shutil.which("prometheus")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.1, what: str = "it"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (OSError, httpx.HTTPError):
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout}s")


class Process:
    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self._file = log.open("wb")
        self.proc = subprocess.Popen(args, stdout=self._file, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._file.close()


class NodeExporter:
    """node_exporter with few collectors; the textfile collector injects filesystems and
    systemd units, so thresholds are crossed and recovered at will."""

    def __init__(self, workdir: Path) -> None:
        assert NODE_EXPORTER, "prometheus-node-exporter is not installed (.ci/install-test-deps.sh)"
        self.textfile_dir = workdir / "textfile"
        self.textfile_dir.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self.set_filesystem(used_percent=50.0)
        self.set_failed_units([])
        self.process = Process(
            [
                NODE_EXPORTER,
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--collector.disable-defaults",
                "--collector.cpu",
                "--collector.meminfo",
                "--collector.loadavg",
                "--collector.textfile",
                f"--collector.textfile.directory={self.textfile_dir}",
            ],
            workdir / "node_exporter.log",
        )
        wait_until(
            lambda: httpx.get(self.url, timeout=1).status_code == 200, what="node_exporter start"
        )

    def _write(self, name: str, text: str) -> None:
        tmp = self.textfile_dir / f".{name}.tmp"
        tmp.write_text(text)
        tmp.rename(self.textfile_dir / f"{name}.prom")  # atomic: never half a file scraped

    def set_filesystem(self, used_percent: float, mountpoint: str = "/srv/data") -> None:
        size = 100 * 2**30
        avail = size * (100 - used_percent) / 100
        labels = f'device="/dev/vdb1",fstype="ext4",mountpoint="{mountpoint}"'
        self._write(
            "filesystem",
            "# HELP node_filesystem_size_bytes Filesystem size in bytes.\n"
            "# TYPE node_filesystem_size_bytes gauge\n"
            f"node_filesystem_size_bytes{{{labels}}} {size}\n"
            "# HELP node_filesystem_avail_bytes Filesystem space available in bytes.\n"
            "# TYPE node_filesystem_avail_bytes gauge\n"
            f"node_filesystem_avail_bytes{{{labels}}} {avail:.0f}\n"
            # A tmpfs at 100 % is ignored by fstype.
            'node_filesystem_size_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 1000\n'
            'node_filesystem_avail_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 0\n',
        )

    def set_failed_units(self, failed: list[str]) -> None:
        lines = [
            "# HELP node_systemd_unit_state Systemd unit",
            "# TYPE node_systemd_unit_state gauge",
        ]
        for unit in ["nginx.service", "cron.service", *failed]:
            for state in ("active", "failed"):
                value = 1 if (state == "failed") == (unit in failed) else 0
                labels = f'name="{unit}",state="{state}",type="simple"'
                lines.append(f"node_systemd_unit_state{{{labels}}} {value}")
        self._write("systemd", "\n".join(lines) + "\n")

    def stop(self) -> None:
        self.process.stop()


class Prometheus:
    def __init__(self, workdir: Path, scrape: str) -> None:
        assert PROMETHEUS, "prometheus is not installed (.ci/install-test-deps.sh)"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: node\n"
            f"    static_configs: [{{targets: ['{scrape}']}}]\n"
        )
        self.process = Process(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                # Apply the static targets at once, not after the default 5 s.
                "--scrape.discovery-reload-interval=100ms",
            ],
            workdir / "prometheus.log",
        )
        wait_until(
            lambda: httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200,
            what="prometheus ready",
        )
        self.wait_for("up", lambda up: up == 1)

    def query(self, promql: str) -> list[float]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=2)
        return [float(item["value"][1]) for item in response.json()["data"]["result"]]

    def wait_for(self, promql: str, predicate, timeout: float = 20.0) -> None:
        wait_until(
            lambda: (values := self.query(promql)) and predicate(values[0]),
            timeout=timeout,
            what=f"prometheus answering {promql}",
        )

    def stop(self) -> None:
        self.process.stop()


class WebServer:
    """GET /health answers `body` with `status` (both changeable)."""

    def __init__(self, tls_context: ssl.SSLContext | None = None) -> None:
        self.status, self.body = 200, b"OK all good"
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls_context is not None:
            self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        scheme = "https" if tls_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/health"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def self_signed_certificate(directory: Path, days: float) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost that expires in `days`; (cert, key) files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "itilflow-test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def tls_server(directory: Path, days: float) -> tuple[WebServer, Path]:
    """An HTTPS server on a certificate expiring in `days`; (server, its certificate file)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed_certificate(directory, days)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return WebServer(tls_context=context), cert


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    return free_port()
