"""Settings from the environment or a `.env` file (prefix ITILFLOW_)."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEMO_SECRETS_FILE = "secrets.env"
# The Prefect API's basic-auth credentials `itilflow up` generates when none are given: the
# server it starts and every client on this host (children, `itilflow doctor`) read them here.
PREFECT_AUTH_FILE = "prefect-auth"
PREFECT_AUTH_USER = "itilflow"
# Outside demo mode a secret must be at least as long as 32 random bytes in URL-safe base64
# (`secrets.token_urlsafe(32)`): a short or typed-in token is guessable.
MIN_SECRET_CHARS = 43
GENERATE_SECRET = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
PREFECT_DATABASE_SCHEMES = ("postgresql+asyncpg://", "sqlite+aiosqlite://")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class LogSettings(BaseSettings):
    """What the CLI needs before anything else (docs/observability.md): how to log. A class of
    its own, so that every command reads it without Settings' secret blocks and checks."""

    model_config = SettingsConfigDict(
        env_prefix="ITILFLOW_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # "text": time, level, logger and message on a line; "json": one JSON object a line.
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    # The gateway's access log: a line per request (method, path without secrets, status,
    # duration, principal), logger itilflow.gateway.access at INFO.
    access_log: bool = True

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
        return value.upper()


class Settings(LogSettings):
    # Demo mode may invent its own secrets (kept in the data folder); production must be given them.
    demo: bool = False
    data_dir: Path = Path("data")
    database_url: str | None = None
    policy_dir: Path | None = None

    # An existing Prefect server; empty means `itilflow up` starts one on SQLite in data_dir.
    prefect_api_url: str | None = None
    prefect_port: int = 4200
    # The address the Prefect server `itilflow up` starts listens on: loopback, so that only this
    # host reaches it (and a TLS proxy in front of it, docs/security.md).
    prefect_host: str = "127.0.0.1"
    # The database of the Prefect server `itilflow up` starts (empty: SQLite in data_dir), e.g.
    # postgresql+asyncpg://user:password@host/prefect. A secret: the URL may hold a password.
    prefect_database_url: SecretStr | None = None
    work_pool: str = "itilflow"

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    public_url: str | None = None
    # Where the CLI's client commands (`itilflow incident ...`, `itilflow change ...`) send
    # their requests; empty: public_url. They need this and api_token, never the secret key.
    api_url: str | None = None
    max_body_bytes: int = 1_000_000
    # Slow or idle clients (docs/scaling.md, "The gateway under load"): a connection that has
    # not sent its request's headers this many seconds after it opened or after its last
    # response is closed; connections past the maximum close the one waiting longest for its
    # headers; a keep-alive connection is closed after this many idle seconds.
    gateway_header_timeout: float = Field(default=10.0, gt=0)
    gateway_max_connections: int = Field(default=1000, ge=10)
    gateway_keep_alive_timeout: int = Field(default=5, ge=1)

    api_token: SecretStr | None = None
    secret_key: SecretStr | None = None
    # A bearer token that may read the gateway's /metrics and nothing else (docs/observability.md):
    # for a Prometheus on another host. Loopback clients read /metrics without one.
    metrics_token: SecretStr | None = None
    # Names of Prefect Secret blocks holding the secrets, read from the Prefect API when the
    # secret itself is not set (docs/security.md).
    api_token_secret_block: str | None = None
    secret_key_secret_block: str | None = None
    smtp_password_secret_block: str | None = None
    # The Prefect API's basic auth, "user:password": `itilflow up` gives it to the server it
    # starts (PREFECT_SERVER_API_AUTH_STRING) and to every client (PREFECT_API_AUTH_STRING).
    # Empty with the server `up` starts: generated once into the data folder (PREFECT_AUTH_FILE).
    prefect_auth_string: SecretStr | None = None

    # Prefect workers `itilflow up` starts on this host (0: none, the runs go to workers on
    # other hosts; docs/scaling.md).
    workers: int = Field(default=1, ge=0, le=32)

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_timeout: float = 10.0
    mail_from: str = "itilflow <itilflow@localhost>"

    apprise_config: Path | None = None
    # Seconds between the engine's retries of a failed email or chat message inside its flow
    # run: short, since the batch (and its lane) waits for them.
    notify_retry_delays: list[float] = [1, 4]
    # After those retries: when the runner tries a failed notification again, in a flow run of
    # its own, then with back-off (2 s doubling to 5 min) until it is delivered.
    redeliver_after_seconds: float = 15
    # Messages sent at once by one flow run (mail relays and chat services limit connections).
    notify_concurrency: int = 10

    # Where `itilflow up --demo` keeps mail and chat when no SMTP server is configured.
    demo_smtp_port: int = 2525
    demo_chat_port: int = 2526

    # The node_exporter the hosts inspection scrapes ({node_exporter_url} in inspection.yaml).
    # Empty: `itilflow up --demo` starts node_exporter_command on node_exporter_port (0: a free
    # port) when the command is installed, and pauses the hosts inspection when it is not.
    node_exporter_url: str | None = None
    node_exporter_command: str = "prometheus-node-exporter"
    node_exporter_port: int = Field(default=0, ge=0, le=65535)

    # How many batches one runner drives at once, at most one per kind (new incidents,
    # resolutions, redeliveries, timers): against a Prefect server on SQLite, concurrent runs
    # of one kind made its database answer "busy" (503) and its client back off 2-8 s.
    runner_concurrency: int = 4
    # Runners are told apart by name (host:runner by default): give each runner on one host its
    # own, since a runner starting takes back the claims held under its name.
    runner_name: str | None = None
    # The runner's own /metrics (docs/observability.md): loopback by default; the port defaults
    # to the gateway's + 1 (8081), so that stacks on other ports (and the tests') do not collide.
    # 0: not served.
    runner_metrics_host: str = "127.0.0.1"
    runner_metrics_port: int | None = Field(default=None, ge=0, le=65535)

    # Browser sessions of people signed in to the pages (docs/security.md, "Sign-in"): they end
    # after this long without a request, and at the latest this long after the sign-in.
    session_idle_minutes: int = Field(default=480, ge=1)
    session_max_hours: int = Field(default=24, ge=1)
    # Sign-in through an OpenID Connect identity provider, when the issuer is set. The claim of
    # the ID token that holds the directory's username.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_username_claim: str = "preferred_username"

    _from_secret_blocks: set[str] = PrivateAttr(default_factory=set)

    @field_validator("prefect_database_url")
    @classmethod
    def _async_driver(cls, value: SecretStr | None) -> SecretStr | None:
        # The Prefect server talks to its database through asyncio drivers only.
        if value is not None and not value.get_secret_value().startswith(PREFECT_DATABASE_SCHEMES):
            raise ValueError(
                "the Prefect server's database URL must start with "
                f"{' or '.join(PREFECT_DATABASE_SCHEMES)} (asyncpg comes with Prefect)"
            )
        return value

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if self.database_url is None:
            self.database_url = f"sqlite:///{(self.data_dir / 'itilflow.db').resolve()}"
        if self.public_url is None:
            self.public_url = f"http://{self.gateway_host}:{self.gateway_port}"
        self.public_url = self.public_url.rstrip("/")
        if self.runner_metrics_port is None:
            self.runner_metrics_port = self.gateway_port + 1 if 0 < self.gateway_port < 65535 else 0
        if self.prefect_auth_string is not None and not self.prefect_auth_string.get_secret_value():
            self.prefect_auth_string = None  # blank: unset, never an empty password
        if self.prefect_auth_string is None and not self.prefect_api_url:
            # The credentials of the server `itilflow up` started here, for every local client.
            stored = read_prefect_auth_string(self.data_dir)
            self.prefect_auth_string = SecretStr(stored) if stored else None
        return self

    @model_validator(mode="after")
    def _read_secret_blocks(self) -> Settings:
        for field_name in SECRET_BLOCK_FIELDS:
            block = getattr(self, f"{field_name}_secret_block")
            # An empty value counts as unset: `itilflow up` blanks inherited ones this way.
            if block and not getattr(self, field_name):
                value = read_secret_block(
                    block, api_url=self.prefect_api_url, auth_string=self.prefect_auth_string
                )
                setattr(self, field_name, SecretStr(value))
                self._from_secret_blocks.add(field_name)
        return self

    @property
    def from_secret_blocks(self) -> frozenset[str]:
        """The secrets read from Secret blocks (not to be copied into a child's environment)."""
        return frozenset(self._from_secret_blocks)

    @property
    def client_api_url(self) -> str:
        """The gateway the CLI's client commands talk to."""
        return (self.api_url or self.public_url or "").rstrip("/")

    @property
    def local_prefect_api_url(self) -> str:
        """The Prefect API: the configured server, or the one `itilflow up` starts."""
        if self.prefect_api_url:
            return self.prefect_api_url
        # A server listening on every address is reached on loopback.
        host = "127.0.0.1" if self.prefect_host in ("0.0.0.0", "::", "") else self.prefect_host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.prefect_port}/api"

    @property
    def prefect_basic_auth(self) -> tuple[str, str] | None:
        """The Prefect API's credentials as (user, password) for an HTTP client, or None."""
        if self.prefect_auth_string is None:
            return None
        user, _, password = self.prefect_auth_string.get_secret_value().partition(":")
        return user, password

    def require_prefect_auth(self) -> None:
        """The server `itilflow up` starts always asks for credentials: without given ones,
        make them once in the data folder (0600) and keep them for the next start. An existing
        server (prefect_api_url) keeps whatever its operator set up."""
        if self.prefect_auth_string is None and not self.prefect_api_url:
            self.prefect_auth_string = SecretStr(ensure_prefect_auth_string(self.data_dir))

    def stack_urls(self) -> dict[str, str]:
        """The stack's own addresses, for the placeholders of the inspection policy
        ({gateway_url}, {prefect_api_url}, {node_exporter_url}); a value left out keeps the
        policy's default."""
        urls = {"gateway_url": self.public_url or "", "prefect_api_url": self.local_prefect_api_url}
        if self.node_exporter_url:
            urls["node_exporter_url"] = self.node_exporter_url.rstrip("/")
        return urls

    @property
    def sqlite_path(self) -> Path | None:
        assert self.database_url is not None
        if self.database_url.startswith("sqlite:///"):
            return Path(self.database_url.removeprefix("sqlite:///"))
        return None

    def require_secrets(self) -> None:
        """Refuse to run with missing or weak secrets outside demo mode; in demo mode make and
        keep them. A blank value is missing, never an empty token that anyone can send."""
        if self.api_token and self.secret_key:
            if not self.demo:
                self._refuse_weak_secrets()
            return
        if not self.demo:
            missing = [
                name
                for name, value in (
                    ("ITILFLOW_API_TOKEN", self.api_token),
                    ("ITILFLOW_SECRET_KEY", self.secret_key),
                )
                if not value
            ]
            raise SettingsError(
                f"{', '.join(missing)} not set: the gateway refuses to start without its own "
                "secrets outside demo mode (set them in the environment or .env, or use --demo)"
            )
        stored = load_demo_secrets(self.data_dir)
        self.api_token = self.api_token or SecretStr(stored["ITILFLOW_API_TOKEN"])
        self.secret_key = self.secret_key or SecretStr(stored["ITILFLOW_SECRET_KEY"])

    def _refuse_weak_secrets(self) -> None:
        assert self.api_token is not None and self.secret_key is not None
        short = [
            name
            for name, value in (
                ("ITILFLOW_API_TOKEN", self.api_token),
                ("ITILFLOW_SECRET_KEY", self.secret_key),
            )
            if len(value.get_secret_value().strip()) < MIN_SECRET_CHARS
        ]
        if short:
            raise SettingsError(
                f"{', '.join(short)} too short: outside demo mode a secret needs at least "
                f"{MIN_SECRET_CHARS} characters of random data (32 random bytes); make one with "
                f"{GENERATE_SECRET}"
            )


class SettingsError(RuntimeError):
    pass


SECRET_BLOCK_FIELDS = ("api_token", "secret_key", "smtp_password")


def read_secret_block(
    name: str, *, api_url: str | None = None, auth_string: SecretStr | None = None
) -> str:
    """The value of the Prefect Secret block `name`, from `api_url` (ITILFLOW_PREFECT_API_URL)
    or else the process's Prefect API (PREFECT_API_URL).

    Refuses when neither is set: Prefect would otherwise start a temporary server of its own,
    which has no blocks.
    """
    from prefect.client.orchestration import get_client
    from prefect.settings import (
        PREFECT_API_AUTH_STRING,
        PREFECT_API_URL,
        get_current_settings,
        temporary_settings,
    )

    updates: dict = {}
    if api_url:
        updates[PREFECT_API_URL] = api_url
    if auth_string is not None:
        updates[PREFECT_API_AUTH_STRING] = auth_string.get_secret_value()
    with temporary_settings(updates=updates):
        if not get_current_settings().api.url:
            raise SettingsError(
                f"Secret block {name!r}: neither ITILFLOW_PREFECT_API_URL nor PREFECT_API_URL "
                "is set, so there is no Prefect server to read it from"
            )
        try:
            with get_client(sync_client=True) as client:
                document = client.read_block_document_by_name(name, block_type_slug="secret")
        except Exception as exc:  # noqa: BLE001 (any failure means: not configured)
            raise SettingsError(f"could not read Secret block {name!r}: {exc}") from exc
    value = document.data.get("value")
    if isinstance(value, dict):  # a Secret may hold JSON; itilflow's secrets are strings
        raise SettingsError(f"Secret block {name!r} holds JSON, not a string")
    return str(value.get_secret_value() if hasattr(value, "get_secret_value") else value)


def load_demo_secrets(data_dir: Path) -> dict[str, str]:
    """Demo secrets: random at first, then reused so links and tokens survive restarts."""
    path = data_dir / DEMO_SECRETS_FILE
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip()
    wanted = ("ITILFLOW_API_TOKEN", "ITILFLOW_SECRET_KEY")
    if all(values.get(key) for key in wanted):
        return values
    for key in wanted:
        if not values.get(key):  # missing or blank: a blank token would let anyone in
            values[key] = secrets.token_urlsafe(32)
    data_dir.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text("".join(f"{key}={values[key]}\n" for key in wanted))
    return values


def read_prefect_auth_string(data_dir: Path) -> str | None:
    """The Prefect credentials `itilflow up` generated into `data_dir`, or None."""
    path = data_dir / PREFECT_AUTH_FILE
    try:
        value = path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return value or None  # blank: none, never an empty password


def ensure_prefect_auth_string(data_dir: Path) -> str:
    """The stored Prefect credentials, made (`itilflow:<32 random bytes>`) when there are none."""
    stored = read_prefect_auth_string(data_dir)
    if stored:
        return stored
    value = f"{PREFECT_AUTH_USER}:{secrets.token_urlsafe(32)}"
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / PREFECT_AUTH_FILE
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(value + "\n")
    return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
