# SPDX-License-Identifier: GPL-3.0-or-later
"""Building the parts of casemail from its settings: shared by the daemon and the CLI."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Engine

from casemail.settings import ConfigError, Settings
from intake.limits import AttachmentLimits
from intake.process import IntakeConfig
from intake.trust import StaffPolicy, StaffRoute
from notifier.render import Renderer, Sender, make_environment
from store.blobs import BlobStore
from store.codes import Signer
from store.db import is_sqlite, make_engine, migrate, sqlite_file
from store.mailing import Identity


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Store:
    engine: Engine
    blobs: BlobStore


def release_large_blocks() -> None:
    """Have glibc give large freed blocks (a big mail, its parts) straight back to the system.

    glibc raises its mmap threshold each time a large block is freed, up to 32 MiB, after which a mail
    of a few megabytes lives in the heap and its memory stays with the process once it is done: four
    25 MB mails at once left the daemon hundreds of megabytes it no longer used. A fixed threshold of
    1 MiB keeps every such block mmapped, so freeing it returns it (the same as MALLOC_MMAP_THRESHOLD_
    in the environment). Elsewhere than glibc this does nothing.
    """
    m_mmap_threshold = -3  # from glibc's malloc.h
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(m_mmap_threshold, 1 << 20)
    except (OSError, AttributeError):
        pass


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s")
    # The libraries below narrate every step at INFO (aiosmtpd logs each SMTP command); their
    # warnings and errors still come through.
    for noisy in ("mail.log", "alembic", "apscheduler", "mailparser"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def open_store(settings: Settings, *, upgrade: bool = True) -> Store:
    engine = make_engine(settings.database_url)
    if upgrade:
        migrate(engine)
    return Store(engine=engine, blobs=BlobStore(settings.path(settings.storage.blobs)))


@contextlib.contextmanager
def opened_store(settings: Settings, *, upgrade: bool = True) -> Iterator[Store]:
    """The store for one command: opened (and migrated), and always closed again."""
    store = open_store(settings, upgrade=upgrade)
    try:
        yield store
    finally:
        store.engine.dispose()
        store.blobs.close()


def secret_key(settings: Settings) -> bytes:
    """The key that signs our tokens: from the config, or made once and kept beside the data."""
    if settings.support.secret_key:
        if len(settings.support.secret_key) < 16:
            raise ConfigError("support.secret_key: must be at least 16 characters (or empty to generate one)")
        return settings.support.secret_key.encode()
    path = settings.path(settings.storage.secret_key_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    key = path.read_text().strip()
    if len(key) < 16:
        raise ConfigError(f"storage.secret_key_file: {path} holds no usable key")
    return key.encode()


def make_identity(settings: Settings) -> Identity:
    key = secret_key(settings)
    # The loop mark must be the same after a restart (our own mail may come back much later) and must
    # not reveal the key, so it is derived from it one-way.
    instance_id = hashlib.sha256(b"casemail-instance:" + key).hexdigest()[:16]
    return Identity(signer=Signer(key), support_addresses=tuple(settings.support.addresses),
                    support_name=settings.support.name, instance_id=instance_id)


def make_intake_config(settings: Settings, identity: Identity) -> IntakeConfig:
    staff = StaffPolicy(
        addresses=frozenset(a.lower() for a in settings.staff.addresses),
        domains=frozenset(d.lower() for d in settings.staff.domains),
        trusted_authserv_ids=frozenset(i.lower() for i in settings.staff.trusted_authserv_ids),
        routes=tuple(
            StaffRoute(products=frozenset(p.strip().lower() for p in r.products), severities=frozenset(r.severities),
                       addresses=tuple(r.addresses))
            for r in settings.staff.routes
        ),
    )
    # A transport is trusted when only our own MTA can reach it and that MTA authenticates staff.
    trusted = frozenset({"lmtp"} if settings.lmtp.trusted else set())
    limits = settings.limits
    return IntakeConfig(
        identity=identity,
        staff=staff,
        trusted_transports=trusted,
        attachment_limits=AttachmentLimits(max_count=limits.max_attachments,
                                           max_file_bytes=limits.max_attachment_size,
                                           max_total_bytes=limits.max_attachments_total),
        new_cases_per_hour=limits.new_cases_per_hour,
    )


def make_renderer(settings: Settings, identity: Identity) -> Renderer:
    override = settings.path(settings.templates.override_dir) if settings.templates.override_dir else None
    if override is not None and not override.is_dir():
        raise ConfigError(f"templates.override_dir: {override} is not a directory")
    blobs = BlobStore(settings.path(settings.storage.blobs))
    return Renderer(make_environment(override),
                    Sender(identity.support_address, identity.support_name, identity.instance_id),
                    read_blob=blobs.get)


def sqlite_lock_path(settings: Settings, engine: Engine) -> Path | None:
    database = sqlite_file(settings.database_url) if is_sqlite(engine) else None
    return database.with_name(database.name + ".lock") if database is not None else None
