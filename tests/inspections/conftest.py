"""Real peers started once for the module, and a policy folder whose inspection.yaml points at
them. node_exporter's textfile collector decides the filesystem fill and the failed units."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from itilflow.policies import default_policy_dir
from itilflow.policies.loader import FILES
from itilflow.settings import Settings
from tests.conftest import ALL_TAGS, make_settings, write_apprise_config
from tests.inspections.servers import (
    NodeExporter,
    Prometheus,
    WebServer,
    closed_port,
    tls_server,
)

FS_USED = (
    '100 * (1 - node_filesystem_avail_bytes{mountpoint="/srv/data"}'
    ' / node_filesystem_size_bytes{mountpoint="/srv/data"})'
)


@dataclass
class Peers:
    node: NodeExporter
    prometheus: Prometheus
    web: WebServer
    tls: WebServer
    tls_ca: Path
    closed: int

    def reset(self) -> None:
        self.node.set_filesystem(used_percent=50.0)
        self.node.set_failed_units([])
        self.web.status, self.web.body = 200, b"OK all good"


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    workdir = tmp_path_factory.mktemp("inspection-peers")
    node = NodeExporter(workdir / "node")
    (workdir / "prometheus").mkdir()
    prometheus = Prometheus(workdir / "prometheus", scrape=f"127.0.0.1:{node.port}")
    web = WebServer()
    tls, ca = tls_server(workdir, days=3)
    found = Peers(node, prometheus, web, tls, ca, closed_port())
    try:
        yield found
    finally:
        for peer in (tls, web, prometheus, node):
            peer.stop()


def inspection_policy(peers: Peers) -> dict:
    node = {
        "type": "node_exporter",
        "url": peers.node.url,
        "sample_interval": "1s",
        # CPU, memory and load are this machine's own: recorded, never judged.
        "thresholds": {
            "cpu_percent": {},
            "memory_percent": {},
            "load_per_core": {},
            "failed_units": {"warning": 1, "critical": 1},
        },
    }
    return {
        "timeout": "2s",
        "retries": 1,
        "retry_delay": "0",
        "groups": {
            "test": {
                "schedule": "*/5 * * * *",
                "timezone": "Asia/Shanghai",
                "targets": {
                    "node-1": {"ci": "db-1", "checks": [node]},
                    "node-1-prom": {
                        "ci": "db-1",
                        "checks": [
                            {
                                "name": "disk",
                                "type": "promql",
                                "url": peers.prometheus.url,
                                "query": FS_USED,
                                "warning": 85,
                                "critical": 95,
                                "unit": "%",
                                "incident": {"resolve_on_recovery": False},
                            }
                        ],
                    },
                    "web": {
                        "checks": [
                            {
                                "type": "http",
                                "url": peers.web.url,
                                "expect_text": "OK",
                                "incident": {"category": "software", "impact": "high"},
                            }
                        ]
                    },
                    "tls-soon": {
                        "checks": [
                            {
                                "type": "tls",
                                "host": "127.0.0.1",
                                "port": peers.tls.port,
                                "ca_file": str(peers.tls_ca),
                                "incident": {"category": "security", "open_on": ["critical"]},
                            }
                        ]
                    },
                    "closed-port": {
                        "checks": [{"type": "tcp", "host": "127.0.0.1", "port": peers.closed}]
                    },
                    "dead-exporter": {
                        "checks": [
                            {
                                "type": "node_exporter",
                                "url": f"http://127.0.0.1:{peers.closed}/metrics",
                                "incident": {"open_on": ["critical"]},
                            }
                        ]
                    },
                },
            },
            "fill": {
                "schedule": "0 * * * *",
                "targets": {
                    "node-2": {
                        "checks": [
                            {
                                "type": "node_exporter",
                                "url": peers.node.url,
                                "metrics": ["filesystem", "filesystem_fill"],
                                "thresholds": {"filesystem_percent": {"critical": 99}},
                            }
                        ]
                    }
                },
            },
        },
    }


@pytest.fixture
def settings(tmp_path: Path, database_url: str, smtp_server, http_sink, peers: Peers) -> Settings:
    peers.reset()
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    for filename, _ in FILES.values():
        source = default_policy_dir().joinpath(filename)
        (policy_dir / filename).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    (policy_dir / "inspection.yaml").write_text(yaml.safe_dump(inspection_policy(peers)))
    return make_settings(
        tmp_path,
        smtp_port=smtp_server.port,
        apprise_config=write_apprise_config(tmp_path / "apprise.yaml", http_sink, ALL_TAGS),
        policy_dir=policy_dir,
    )
