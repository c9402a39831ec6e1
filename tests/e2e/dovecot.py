# SPDX-License-Identifier: GPL-3.0-or-later
"""A real Dovecot IMAP server on a loopback port, for the IMAP poller tests (one per test session).

Any user name logs in with the password "secret" (a static passdb), so every test takes a fresh
mailbox of its own. XOAUTH2 goes through Dovecot's oauth2 passdb to a token-info stub served here.
The directory must be traversable by the dovecot and nobody users, which pytest's 0700 tmp_path is
not, hence mkdtemp and chmod 0755. Install Dovecot with scripts/install-test-services.sh.
"""

from __future__ import annotations

import imaplib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import skip_or_fail

PASSWORD = "secret"
# The token-info stub accepts any token that starts with this and names its user after it.
GOOD_TOKEN_PREFIX = "good-"

CONF = """\
protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
instance_name = casemail-test-{port}
log_path = {d}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
mail_location = maildir:{d}/mail/%u
mail_uid = nobody
mail_gid = nogroup
first_valid_uid = 1
passdb {{
  driver = static
  mechanisms = plain login
  args = password={password}
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {d}/oauth2.conf.ext
}}
userdb {{
  driver = static
  args = home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Processed {{
    auto = create
  }}
}}
"""


@dataclass(frozen=True)
class Dovecot:
    host: str
    port: int
    dir: Path

    def new_user(self) -> str:
        return f"t{uuid.uuid4().hex[:12]}@casemail.test"

    def mailbox(self, user: str, **overrides: Any) -> dict[str, Any]:
        """An [[imap.mailboxes]] table for this server and user."""
        return {"name": user.split("@")[0], "host": self.host, "port": self.port, "tls": False, "user": user,
                "password": PASSWORD, "poll_seconds": 300.0, "timeout": 10.0, "max_backoff_seconds": 2.0,
                **overrides}

    def connect(self, user: str) -> imaplib.IMAP4:
        c = imaplib.IMAP4(self.host, self.port, timeout=10)
        c.login(user, PASSWORD)
        return c

    def append(self, user: str, raw: bytes, folder: str = "INBOX") -> int:
        c = self.connect(user)
        try:
            typ, data = c.append(folder, "", None, raw)
            assert typ == "OK", data
            match = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
            assert match, data
            return int(match.group(1))
        finally:
            c.logout()

    def messages(self, user: str, folder: str) -> list[tuple[int, str, bytes]]:
        """(uid, flags, raw) of every message in the folder; [] if it does not exist."""
        c = self.connect(user)
        try:
            typ, _ = c.select(f'"{folder}"', readonly=True)
            if typ != "OK":
                return []
            typ, data = c.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
            out = []
            for item in data:
                if isinstance(item, tuple):
                    meta = item[0]
                    uid = int(re.search(rb"UID (\d+)", meta).group(1))  # type: ignore[union-attr]
                    flags = re.search(rb"FLAGS \(([^)]*)\)", meta).group(1).decode()  # type: ignore[union-attr]
                    out.append((uid, flags, item[1]))
            return out
        finally:
            c.logout()

    def kick(self, user: str) -> None:
        """Disconnect the user's sessions; the server sends BYE first."""
        subprocess.run(["doveadm", "-c", str(self.dir / "dovecot.conf"), "kick", user], check=True,
                       capture_output=True, timeout=10)


class _TokenInfo(BaseHTTPRequestHandler):
    """Dovecot's oauth2 passdb asks here whether a token is valid (and for whom)."""

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls.
        token = self.path.partition("access_token=")[2]
        ok = token.startswith(GOOD_TOKEN_PREFIX)
        reply = {"email": token[len(GOOD_TOKEN_PREFIX):]} if ok else {"error": "invalid_token"}
        body = json.dumps(reply).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_greeting(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dovecot exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(200).startswith(b"* OK"):
                    return
        except OSError:
            # Nothing listens yet: Dovecot is still starting. There is no event to wait for, so poll.
            time.sleep(0.05)
    raise RuntimeError(f"dovecot gave no greeting on port {port} within {timeout} s")


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    if not shutil.which("dovecot") or not shutil.which("doveadm"):
        skip_or_fail("Dovecot is not installed (scripts/install-test-services.sh installs dovecot-imapd)")
    if os.geteuid() != 0:
        skip_or_fail("the Dovecot fixture runs Dovecot as root, with mail owned by nobody")
    d = Path(tempfile.mkdtemp(prefix="casemail-dovecot-"))
    os.chmod(d, 0o755)
    (d / "mail").mkdir()
    shutil.chown(d / "mail", "nobody", "nogroup")
    tokeninfo = ThreadingHTTPServer(("127.0.0.1", 0), _TokenInfo)
    threading.Thread(target=tokeninfo.serve_forever, daemon=True).start()
    port = free_port()
    (d / "dovecot.conf").write_text(CONF.format(d=d, port=port, password=PASSWORD))
    (d / "oauth2.conf.ext").write_text(
        f"tokeninfo_url = http://127.0.0.1:{tokeninfo.server_address[1]}/tokeninfo?access_token=\n"
        "username_attribute = email\n")
    proc = subprocess.Popen(["dovecot", "-F", "-c", str(d / "dovecot.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        wait_for_greeting(port, proc)
        yield Dovecot("127.0.0.1", port, d)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        tokeninfo.shutdown()
        tokeninfo.server_close()
        shutil.rmtree(d, ignore_errors=True)
