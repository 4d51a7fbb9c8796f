"""Chat delivery through apprise: services come from a tagged apprise config file and/or URLs."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import apprise
from apprise.common import MATCH_ALL_TAG, MATCH_ALWAYS_TAG
from apprise.logger import LOGGER_NAME

from .errors import NotificationError

# A filter tag like "2:ops" or "ops:3" means priority / retry to apprise, and commas or spaces
# split one string into several tags: refuse such tags rather than route somewhere unexpected.
_TAG = re.compile(r"[A-Za-z0-9_.\-]+")

_ASSET = apprise.AppriseAsset(app_id="itilflow", app_desc="itilflow notifications")


async def asend_chat(
    *,
    title: str,
    body: str,
    tags: Sequence[str],
    config: str | Path | None,
    urls: Sequence[str] = (),
) -> None:
    """Send a plain-text chat notification.

    `tags` select services from the apprise `config` (YAML or TEXT file, or an http(s) URL to
    one); each tag must match at least one service there. `urls` are apprise URLs notified
    every time, whatever the tags. Raises ValueError for bad arguments and NotificationError when
    the config cannot be used, a tag matches no service, or any service fails.
    """
    wanted = (tags,) if isinstance(tags, str) else tuple(tags)
    direct = (urls,) if isinstance(urls, str) else tuple(urls)
    if bad := [tag for tag in wanted if not _TAG.fullmatch(tag)]:
        raise ValueError(f"chat tags must be letters, digits, '_', '.', '-': got {bad!r}")
    if not wanted and not direct:
        raise ValueError("asend_chat needs tags (with a config) or urls: nothing to notify")
    if wanted and config is None:
        raise ValueError(f"chat tags {list(wanted)} need an apprise config file to route to")

    notifier = apprise.Apprise(asset=_ASSET)
    if wanted:
        assert config is not None
        notifier.add(_load_config(config))
        unmatched = [tag for tag in wanted if not any(notifier.find(tag=tag, match_always=False))]
        if unmatched:
            raise NotificationError(
                f"chat tag(s) {unmatched} match no service in apprise config {config}"
                " (a misrouted notification is a lost one)"
            )
    for url in direct:
        # "always" is apprise's tag for services notified whatever the filter.
        if not notifier.add(url, tag=MATCH_ALWAYS_TAG):
            scheme = url.partition("://")[0] or "?"
            raise NotificationError(f"apprise cannot use the {scheme}:// URL given in `urls`")

    with _apprise_warnings() as warnings:
        delivered = await notifier.async_notify(
            body=body,
            title=title,
            tag=list(wanted) or MATCH_ALL_TAG,
            body_format=apprise.NotifyFormat.TEXT,
        )
    if delivered is None:
        raise NotificationError(f"no chat service matched tags {list(wanted)}")
    if not delivered:
        reason = "; ".join(warnings) or "apprise gave no reason; see the 'apprise' logger"
        raise NotificationError(f"chat notification {title!r} failed: {reason}")


def _load_config(config: str | Path) -> apprise.AppriseConfig:
    location = str(config)
    if "://" not in location:
        path = Path(location)
        # apprise only logs an unreadable file and carries on with no services.
        if not path.is_file():
            raise NotificationError(f"apprise config {path} does not exist")
        location = str(path.resolve())
    loaded = apprise.AppriseConfig(asset=_ASSET)
    if not loaded.add(location):
        raise NotificationError(f"apprise cannot read config {config}")
    if not loaded.servers():
        raise NotificationError(f"apprise config {config} defines no usable service")
    return loaded


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _apprise_warnings() -> Iterator[list[str]]:
    """Collect apprise's warnings during a send: its notify() says only False, the log says why.

    Concurrent sends share the logger, so one failure may also list another send's warnings.
    """
    handler = _Collect()
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
