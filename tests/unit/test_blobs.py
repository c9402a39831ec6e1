# SPDX-License-Identifier: GPL-3.0-or-later
"""The blob store: content-addressed, idempotent, the same whether written one by one or in a batch."""

from __future__ import annotations

import pytest

from store.blobs import BlobNotFound, BlobStore


def test_put_get_and_idempotence(tmp_path):
    blobs = BlobStore(tmp_path)
    digest = blobs.put(b"raw mail \x00\xff")
    assert blobs.get(digest) == b"raw mail \x00\xff"
    assert blobs.put(b"raw mail \x00\xff") == digest
    assert not list(tmp_path.rglob("*.tmp"))
    with pytest.raises(BlobNotFound):
        blobs.get("0" * 64)
    with pytest.raises(ValueError):
        blobs.path("../../etc/passwd")


def test_a_batch_stores_exactly_what_single_puts_store(tmp_path):
    one, many = BlobStore(tmp_path / "one"), BlobStore(tmp_path / "many")
    payloads = [bytes([i]) * (i * 1000 + 1) for i in range(20)] + [b"dup", b"dup"]
    batch = many.batch()
    digests = [batch.add(p) for p in payloads]
    batch.finish()
    many.close()
    assert digests == [one.put(p) for p in payloads]
    assert all(many.get(d) == p for d, p in zip(digests, payloads))
    assert not list((tmp_path / "many").rglob("*.tmp"))
