"""What a step runs under, whoever wrote the plan: an environment allow-list, an OS user, its own
working folder, the hosts it may call, and the secret values never kept in its output.

The change process builds one from the policy (change.yaml `steps:`) and the settings; code that
runs an action without one gets `Containment()`: the default environment allow-list and a private
folder, any `cwd` and any host (the library's own tests), and nothing to redact but the step's env.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

DEFAULT_ENVIRONMENT: tuple[str, ...] = ("PATH", "LANG", "LC_ALL", "TZ", "HOME")


class ContainmentRefused(Exception):
    """The step may not run as asked (a folder, a host, a user); nothing was started."""


@dataclass(frozen=True)
class Account:
    """The OS user a shell step switches to."""

    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class Containment:
    environment: tuple[str, ...] = DEFAULT_ENVIRONMENT
    run_as: str | None = None
    run_as_group: str | None = None
    cwd_roots: tuple[str, ...] | None = None
    """Folders a step's `cwd` may be in; None: anywhere, (): nowhere."""
    http_hosts: tuple[str, ...] | None = None
    """"host", "host:port", "*.domain", "[::1]"; None: any host."""
    secrets: tuple[str, ...] = ()
    """Values replaced by [redacted] in every result (tokens, keys, passwords)."""

    def account(self) -> Account | None:
        """The user to switch to, None for the worker's own. Refused when the user or group does
        not exist, or the worker is not root and would have to switch."""
        if self.run_as is None:
            return None
        try:
            user = pwd.getpwnam(self.run_as)
        except KeyError:
            raise ContainmentRefused(f"no OS user {self.run_as!r} to run steps as") from None
        gid = user.pw_gid
        if self.run_as_group is not None:
            try:
                gid = grp.getgrnam(self.run_as_group).gr_gid
            except KeyError:
                raise ContainmentRefused(
                    f"no OS group {self.run_as_group!r} to run steps as"
                ) from None
        same = user.pw_uid == os.geteuid() and gid == os.getegid()
        if not same and os.geteuid() != 0:
            raise ContainmentRefused(
                f"steps must run as {self.run_as!r} but this worker (uid {os.geteuid()}) is not "
                "root and cannot switch user"
            )
        return Account(self.run_as, user.pw_uid, gid, user.pw_dir)

    def environment_for(self, env: dict[str, str], account: Account | None) -> dict[str, str]:
        """The allowed names from the worker's environment, then the step's own `env`."""
        chosen = {name: os.environ[name] for name in self.environment if name in os.environ}
        if "PATH" in self.environment and "PATH" not in chosen:
            chosen["PATH"] = os.defpath
        if account is not None and "HOME" in self.environment:
            chosen["HOME"] = account.home
        return {**chosen, **env}

    def check_cwd(self, cwd: str) -> None:
        if self.cwd_roots is None:
            return
        real = os.path.realpath(cwd)
        for root in self.cwd_roots:
            top = os.path.realpath(root)
            if real == top or real.startswith(top.rstrip("/") + "/"):
                return
        roots = ", ".join(self.cwd_roots) or "none configured"
        raise ContainmentRefused(
            f"working directory {cwd} is outside the allowed roots (change.yaml "
            f"steps.cwd_roots: {roots})"
        )

    def check_host(self, url: str) -> None:
        if self.http_hosts is None:
            return
        # httpx's own parse: the host checked is the host the request would go to.
        parsed = httpx.URL(url)
        host = parsed.host.lower()
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        if any(_host_matches(pattern, host, port) for pattern in self.http_hosts):
            return
        shown = f"[{host}]" if ":" in host else host
        raise ContainmentRefused(
            f"host {shown}:{port} is not allowed for steps (change.yaml steps.http_hosts); "
            "no request was made"
        )


def _host_matches(pattern: str, host: str, port: int) -> bool:
    pattern = pattern.lower()
    want_port: int | None = None
    if pattern.startswith("["):
        inside, _, rest = pattern[1:].partition("]")
        name = inside
        if rest.startswith(":"):
            want_port = int(rest[1:])
    else:
        name, _, port_text = pattern.partition(":")
        want_port = int(port_text) if port_text else None
    if want_port is not None and want_port != port:
        return False
    if name.startswith("*."):
        return host.endswith(name[1:])
    return host == name


@contextlib.contextmanager
def private_folder(account: Account | None) -> Iterator[str]:
    """A fresh 0700 folder for one step (owned by the step's user), removed afterwards."""
    folder = tempfile.mkdtemp(prefix="itilflow-step-")
    try:
        if account is not None:
            os.chown(folder, account.uid, account.gid)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
