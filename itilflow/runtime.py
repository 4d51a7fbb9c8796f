"""What tasks need at run time: settings, the database and the policies.

Read when a task runs, never at import, so importing a flow needs no server, database or secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sqlalchemy.engine import Engine

from itilflow.models import get_engine
from itilflow.notifications import MailSettings
from itilflow.policies import Policies, load_policies
from itilflow.settings import Settings, get_settings


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        assert self.settings.database_url is not None
        from itilflow.models.migrations import check_database

        engine = get_engine(self.settings.database_url)
        # Never made or migrated here: `itilflow db upgrade` (or `up`) owns the schema.
        check_database(engine)
        return engine

    @cached_property
    def policies(self) -> Policies:
        return load_policies(self.settings.policy_dir, stack_urls=self.settings.stack_urls())

    @property
    def mail(self) -> MailSettings:
        s = self.settings
        return MailSettings(
            host=s.smtp_host,
            port=s.smtp_port,
            user=s.smtp_user,
            password=s.smtp_password,
            use_tls=s.smtp_starttls,
            use_ssl=s.smtp_ssl,
            timeout=s.smtp_timeout,
            mail_from=s.mail_from,
        )

    @property
    def secret(self) -> str:
        self.settings.require_secrets()
        assert self.settings.secret_key is not None
        return self.settings.secret_key.get_secret_value()


_current: Runtime | None = None


def runtime() -> Runtime:
    global _current
    if _current is None:
        _current = Runtime(get_settings())
    return _current


def configure(settings: Settings) -> Runtime:
    """Use these settings from now on (the CLI, the runner and tests call this)."""
    global _current
    _current = Runtime(settings)
    return _current
