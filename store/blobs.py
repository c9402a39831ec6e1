# SPDX-License-Identifier: GPL-3.0-or-later
"""A content-addressed store for raw messages and attachments.

Each blob is a file named by the sha256 of its bytes. A blob is written to a temporary file, fsynced,
renamed into place and its directory fsynced (and so is the parent of any directory made for it)
before the database row that names it is committed, so a row never points at bytes a crash could
take away. Writing the same bytes twice is free.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

# How many fsyncs a batch keeps in flight at once (see BlobBatch).
SYNC_THREADS = 8


class BlobNotFound(LookupError):
    pass


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._sync_pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        """Store data durably and return its sha256."""
        batch = BlobBatch(self, None)
        digest = batch.add(data)
        batch.finish()
        return digest

    def put_all(self, datas: Sequence[bytes]) -> list[str]:
        """Store each of datas durably, the fsyncs overlapped when there are several; return their
        sha256s in order."""
        if len(datas) <= 1:
            return [self.put(data) for data in datas]
        batch = self.batch()
        digests = [batch.add(data) for data in datas]
        batch.finish()
        return digests

    def batch(self) -> BlobBatch:
        """A batch of puts whose fsyncs overlap; see BlobBatch."""
        return BlobBatch(self, self._pool())

    def get(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise BlobNotFound(sha256) from exc

    def get_unless_inline(self, sha256: str, inline: bytes | None) -> bytes:
        """The bytes a row names: its own copy when it keeps one (small mail, in and out), else the blob."""
        return inline if inline is not None else self.get(sha256)

    def close(self) -> None:
        with self._pool_lock:
            pool, self._sync_pool = self._sync_pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._sync_pool is None:
                self._sync_pool = ThreadPoolExecutor(max_workers=SYNC_THREADS, thread_name_prefix="casemail-fsync")
            return self._sync_pool


class BlobBatch:
    """Puts with the durability of BlobStore.put, but with the fsyncs overlapped.

    Each file is written and (given a pool) its fsync started at once, so the disk works while the
    caller prepares the next blob; `finish` waits for them, renames the files into place and syncs each
    directory once, however many blobs it got. Only after `finish` may the digests be committed.
    """

    def __init__(self, blobs: BlobStore, pool: ThreadPoolExecutor | None) -> None:
        self._blobs = blobs
        self._pool = pool
        self._pending: dict[str, tuple[Path, Path, Future[None] | None]] = {}
        self._dirs: set[Path] = set()

    def add(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self._blobs.path(digest)
        if digest in self._pending or target.exists():
            return digest
        # A directory made here is only durable once the entry naming it is synced in its parent.
        for d in (target.parent.parent, target.parent):
            if not d.is_dir():
                d.mkdir(exist_ok=True)
                self._dirs.add(d.parent)
        tmp = target.with_name(f".{digest}.{os.getpid()}.{threading.get_ident()}.{id(self)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        synced = self._pool.submit(fsync_path, tmp) if self._pool is not None else None
        self._pending[digest] = (tmp, target, synced)
        return digest

    def finish(self) -> None:
        for tmp, target, synced in self._pending.values():
            if synced is None:
                fsync_path(tmp)
            else:
                synced.result()
            os.replace(tmp, target)
            self._dirs.add(target.parent)
        dirs = sorted(self._dirs)
        if self._pool is not None and len(dirs) > 1:
            list(self._pool.map(fsync_path, dirs))
        else:
            for d in dirs:
                fsync_path(d)
        self._pending.clear()
        self._dirs.clear()


def fsync_path(path: Path) -> None:
    # For a directory this makes a rename (or a new entry) in it durable.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
