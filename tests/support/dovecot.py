"""A throwaway IMAP server: Debian's dovecot, run as the current user in a temp folder.

    with Dovecot() as imap:
        imap.append(raw_bytes)                 # a message into INBOX (IMAP APPEND)
        imap.host, imap.port, imap.user, imap.password

Its own dovecot.conf (no system config read): one user from a passwd-file with a generated
password, maildir mail under the folder, plain IMAP on a free loopback port (ssl = no, plaintext
auth allowed: loopback only), logs in dovecot.log there. Stopped (and waited for) on exit, and
the folder removed.

Run as root (CI containers), dovecot refuses to serve logins or mail as root: its login and mail
processes then run as the package's unprivileged users (dovenull, dovecot), who own the folder.
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from tests.support.smtp import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = {login_user}
default_internal_user = {user}
default_internal_group = {group}
mail_location = maildir:{root}/mail/%u
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
last_valid_gid = {gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
}}
service imap-login {{
  chroot =
  user = {login_user}
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-reader {{
    user = {user}
  }}
  unix_listener stats-writer {{
    user = {user}
  }}
}}
protocol imap {{
  mail_max_userip_connections = 50
}}
"""


class Dovecot:
    """One dovecot with one mailbox user; `append` puts a raw message into its INBOX."""

    def __init__(self, *, user: str = "servicedesk") -> None:
        # Its own folder, not a pytest tmp_path: those are 0700 and root's would keep dovecot's
        # unprivileged processes out.
        self.root = Path(tempfile.mkdtemp(prefix="itilflow-dovecot-"))
        self.user = user
        self.password = secrets.token_urlsafe(16)
        self.host = "127.0.0.1"
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> Self:
        for sub in ("run", "state", "mail", "home"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        uid, gid = os.getuid(), os.getgid()
        login = login_user = pwd.getpwuid(uid).pw_name
        if uid == 0:
            login_user, login = "dovenull", "dovecot"
            uid, gid = pwd.getpwnam(login).pw_uid, pwd.getpwnam(login).pw_gid
        group = grp.getgrgid(gid).gr_name
        home = self.root / "home" / self.user
        home.mkdir(exist_ok=True)
        users = self.root / "users"
        users.write_text(f"{self.user}:{{PLAIN}}{self.password}:{uid}:{gid}::{home}\n")
        config = self.root / "dovecot.conf"
        config.write_text(
            CONFIG.format(
                root=self.root,
                user=login,
                login_user=login_user,
                group=group,
                uid=uid,
                gid=gid,
                port=self.port,
            )
        )
        self.root.chmod(0o711)
        for path in (self.root / "mail", home, self.root / "state"):
            os.chown(path, uid, gid)
        users.chmod(0o644)  # read by the auth process (the internal user); loopback test only
        self._process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "dovecot.stderr", "wb"),  # noqa: SIM115 (the child keeps it)
        )
        self._wait_until_listening()
        return self

    def _wait_until_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                stderr = (self.root / "dovecot.stderr").read_text(errors="replace")
                raise RuntimeError(f"dovecot exited: {stderr}\n{self.log}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot did not listen on {self.port}: {self.log}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def client(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4(self.host, self.port, timeout=10)
        imap.login(self.user, self.password)
        return imap

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        """Deliver `raw` into `folder` as a mail server would (IMAP APPEND, no flags)."""
        imap = self.client()
        try:
            status, detail = imap.append(folder, "", None, raw)
            assert status == "OK", detail
        finally:
            imap.logout()

    def flags(self, folder: str = "INBOX") -> list[str]:
        """Each message's FLAGS response, in order (to see what the intake marked)."""
        imap = self.client()
        try:
            imap.select(folder)
            status, data = imap.fetch("1:*", "(FLAGS)")
            if status != "OK" or data == [None]:
                return []
            return [item.decode() for item in data if isinstance(item, bytes)]
        finally:
            imap.logout()
