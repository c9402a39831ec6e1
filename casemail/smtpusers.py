# SPDX-License-Identifier: GPL-3.0-or-later
"""`casemail smtp-user NAME [--remove]`: keep the SMTP AUTH user file (smtp.auth_users).

The password is read from the terminal (asked twice) or, when stdin is not a terminal, as the first
line of stdin, so a script can pipe it in without it showing in the process list. The file keeps its
comments and other users; it is written to a temporary file (mode 0600), fsynced and renamed over the
old one, so a crash leaves the old file or the new, never half of one. The daemon reads the file when
it starts, so a change takes effect at its next start.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from casemail.settings import ConfigError, Settings
from intake.transports.smtp_server import hash_password, user_line
from store.blobs import fsync_path


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    u = sub.add_parser("smtp-user", help="add a user to the SMTP AUTH file (smtp.auth_users), change their "
                                         "password, or remove them")
    u.add_argument("name", help="the login name")
    u.add_argument("--remove", action="store_true", help="remove the user instead")


def updated_lines(lines: Sequence[str], user: str, hashed: str | None) -> tuple[list[str], bool]:
    """The file's lines with user's line replaced by "user:hashed" (appended if new), or removed when
    hashed is None; and whether the user was there before."""
    out: list[str] = []
    found = False
    for line in lines:
        entry = user_line(line)
        if entry is not None and entry[0] == user:
            found = True
            if hashed is not None:
                out.append(f"{user}:{hashed}")
            continue
        out.append(line)
    if not found and hashed is not None:
        out.append(f"{user}:{hashed}")
    return out, found


def valid_user(name: str) -> bool:
    # The file separates the name from its hash with a colon, one user a line.
    return bool(name) and ":" not in name and not any(c.isspace() for c in name) and not name.startswith("#")


def cmd_smtp_user(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.smtp.auth_users:
        raise ConfigError("smtp.auth_users: set it to the file the SMTP AUTH users are kept in")
    path = settings.path(settings.smtp.auth_users)
    if not valid_user(args.name):
        print(f"casemail: {args.name!r} cannot be a login name (no colons, blanks or leading #)", file=sys.stderr)
        return os.EX_USAGE
    lines = path.read_text("utf-8").splitlines() if path.exists() else []
    if args.remove:
        kept, found = updated_lines(lines, args.name, None)
        if not found:
            print(f"casemail: no user {args.name} in {path}", file=sys.stderr)
            return os.EX_NOUSER
        _replace(path, kept)
        print(f"removed {args.name} from {path}; the daemon reads it at its next start")
        if not any(user_line(line) for line in kept):
            print("the file now names no users: the daemon will not start with it until one is added",
                  file=sys.stderr)
        return 0
    password = _read_password()
    if password is None:
        return os.EX_USAGE
    new, found = updated_lines(lines, args.name, hash_password(password))
    _replace(path, new)
    print(f"{'changed the password of' if found else 'added'} {args.name} in {path}; "
          "the daemon reads it at its next start")
    return 0


def _read_password() -> str | None:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if first != getpass.getpass("again: "):
            print("casemail: the passwords differ", file=sys.stderr)
            return None
    else:
        first = sys.stdin.readline().rstrip("\r\n")
    if not first:
        print("casemail: an empty password is not allowed", file=sys.stderr)
        return None
    return first


def _replace(path: Path, lines: list[str]) -> None:
    """Write the file anew, mode 0600, and rename it into place, durably. A file that exists keeps its
    owner and group: the daemon may run as another user than the operator who changes a password (with
    sudo, say), and a file it could no longer read would keep its SMTP listener from starting."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        before: os.stat_result | None = path.stat()
    except FileNotFoundError:
        before = None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if before is not None:
                with contextlib.suppress(PermissionError):  # only root may give a file away
                    os.fchown(f.fileno(), before.st_uid, before.st_gid)
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


COMMANDS = {"smtp-user": cmd_smtp_user}
