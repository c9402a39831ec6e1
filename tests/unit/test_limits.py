# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest

from intake.attachments import make_attachment
from intake.limits import AttachmentLimits, is_dangerous, judge_attachments
from intake.worker import groups


def att(name: str, size: int = 10, ctype: str = "application/octet-stream"):
    return make_attachment(name, ctype, b"x" * size)


@pytest.mark.parametrize(("name", "content", "dangerous"), [
    ("report.pdf", b"%PDF-1.4\n", False),
    ("setup.exe", b"hello", True),
    ("SETUP.EXE", b"hello", True),
    ("invoice.docm", b"hello", True),
    ("invoice.docx", b"hello", False),
    ("script.ps1", b"hello", True),
    ("notes.txt", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 200, True),
    ("archive.tar.gz", b"hello", False),
    ("noextension", b"plain words", False),
])
def test_dangerous_by_name_or_content(name, content, dangerous):
    assert is_dangerous(make_attachment(name, "application/octet-stream", content)) is dangerous


def test_limits_refuse_files_with_a_reason_and_keep_the_rest():
    limits = AttachmentLimits(max_count=2, max_file_bytes=100, max_total_bytes=150)
    verdict = judge_attachments([att("a", 90), att("huge", 500), att("b", 50), att("c", 10)], limits)
    assert [a.filename for a in verdict.kept] == ["a", "b"]
    reasons = dict(verdict.refused)
    assert "limit per file" in reasons["huge"]
    assert "more than 2 files" in reasons["c"]
    verdict = judge_attachments([att("a", 90), att("b", 90)], limits)
    assert [a.filename for a in verdict.kept] == ["a"] and "in all" in dict(verdict.refused)["b"]


@pytest.mark.parametrize(("pending", "count", "size", "want"), [
    ([], 25, 100, []),
    ([(1, 10), (2, 10), (3, 10)], 2, 100, [[1, 2], [3]]),
    # Large mails go alone or a few at a time, and one larger than the limit still goes, alone.
    ([(1, 60), (2, 60), (3, 30), (4, 500), (5, 1)], 25, 100, [[1], [2, 3], [4], [5]]),
    ([(1, 100), (2, 0)], 25, 100, [[1, 2]]),
])
def test_processing_groups_are_bounded_in_count_and_bytes(pending, count, size, want):
    assert groups(pending, max_count=count, max_bytes=size) == want
