# SPDX-License-Identifier: GPL-3.0-or-later
"""Attachment file names: decoding from MIME parameters and making them safe."""

from __future__ import annotations

import email

import pytest

from intake.filenames import (
    MAX_FILENAME_BYTES,
    invent_filename,
    part_filename,
    sanitize_filename,
    unique_filenames,
)

SANITIZE_CASES = [
    # (raw name, expected safe name)
    ("report.pdf", "report.pdf"),
    ("Report Final.PDF", "Report Final.PDF"),
    ("résumé.docx", "résumé.docx"),
    ("日本語.txt", "日本語.txt"),
    ("../../etc/passwd", "passwd"),
    ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
    ("/absolute/path/file.txt", "file.txt"),
    ("C:\\Users\\bob\\Desktop\\notes.txt", "notes.txt"),
    ("dir/", ""),
    ("..", ""),
    ("...", ""),
    (".", ""),
    ("", ""),
    ("   ", ""),
    (".htaccess", "htaccess"),
    ("..hidden.txt", "hidden.txt"),
    ("file.txt.", "file.txt"),
    ("file.txt...", "file.txt"),
    ("file.txt   ", "file.txt"),
    ("  spaced  name .txt", "spaced name .txt"),
    ("a\x00b.txt", "ab.txt"),
    ("evil\x00.exe.txt", "evil.exe.txt"),
    ("line\nbreak.txt", "line break.txt"),
    ("carriage\r\nreturn.txt", "carriage return.txt"),
    ("tab\there.txt", "tab here.txt"),
    ("bell\x07.txt", "bell.txt"),
    ("del\x7f.txt", "del.txt"),
    ("c1\x85control.txt", "c1 control.txt"),  # NEL is a line break
    ("csi\x9b[31m.txt", "csi[31m.txt"),
    ("invoice\u202egpj.exe", "invoicegpj.exe"),
    ("zero\u200bwidth.txt", "zerowidth.txt"),
    ("sep\u2028arator.txt", "sep arator.txt"),
    ("what?.txt", "what_.txt"),
    ("a<b>c.txt", "a_b_c.txt"),
    ('quote"d.txt', "quote_d.txt"),
    ("pipe|star*.txt", "pipe_star_.txt"),
    ("drive:stream.txt", "drive_stream.txt"),
    ("CON", "_CON"),
    ("con.txt", "_con.txt"),
    ("PRN.pdf", "_PRN.pdf"),
    ("aux", "_aux"),
    ("NUL.tar.gz", "_NUL.tar.gz"),
    ("COM1.log", "_COM1.log"),
    ("com9", "_com9"),
    ("LPT1.txt", "_LPT1.txt"),
    ("lpt9.doc", "_lpt9.doc"),
    ("CONSOLE.txt", "CONSOLE.txt"),
    ("COM10.txt", "COM10.txt"),
    ("icon.png", "icon.png"),
    ("???", ""),
    ("***.txt", "___.txt"),
    ("e\u0301te\u0301.txt", "été.txt"),  # NFD (macOS) becomes NFC
    ("archive.tar.gz", "archive.tar.gz"),
    ("no_extension", "no_extension"),
    ("trailing.dot.", "trailing.dot"),
]


@pytest.mark.parametrize(("raw", "expected"), SANITIZE_CASES)
def test_sanitize_filename(raw: str, expected: str) -> None:
    assert sanitize_filename(raw) == expected


@pytest.mark.parametrize(
    ("raw", "ext"),
    [
        ("a" * 500 + ".pdf", ".pdf"),
        ("ü" * 300 + ".docx", ".docx"),
        ("日" * 200 + ".txt", ".txt"),
        ("x" * 1000, ""),
        ("name." + "e" * 40, ""),  # an over-long "extension" is no extension
    ],
)
def test_long_names_are_cut_keeping_extension(raw: str, ext: str) -> None:
    safe = sanitize_filename(raw)
    assert len(safe.encode("utf-8")) <= MAX_FILENAME_BYTES
    assert safe.endswith(ext)
    assert len(safe) > len(ext)
    # A cut never splits a character: the result is valid UTF-8 text by construction.
    safe.encode("utf-8")


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["report.pdf", "report.pdf"], ("report.pdf", "report (2).pdf")),
        (["a.txt", "A.TXT", "a.txt"], ("a.txt", "A (2).TXT", "a (3).txt")),
        (["x", "x", "x"], ("x", "x (2)", "x (3)")),
        (["a.txt", "a (2).txt", "a.txt"], ("a.txt", "a (2).txt", "a (3).txt")),
        (["one.txt", "two.txt"], ("one.txt", "two.txt")),
        ([], ()),
    ],
)
def test_unique_filenames(names: list[str], expected: tuple[str, ...]) -> None:
    assert unique_filenames(names) == expected


@pytest.mark.parametrize(
    ("content_type", "index", "expected"),
    [
        ("application/octet-stream", 1, "attachment-1.bin"),
        ("image/png", 2, "image-2.png"),
        ("image/jpeg", 3, "image-3.jpg"),
        ("application/pdf", 4, "attachment-4.pdf"),
        ("text/plain", 5, "attachment-5.txt"),
        ("message/rfc822", 6, "attachment-6.eml"),
        ("message/delivery-status", 7, "attachment-7.txt"),
        ("application/x-never-heard-of", 8, "attachment-8.bin"),
        ("text/x-never-heard-of", 9, "attachment-9.txt"),
        ("audio/mpeg", 1, "audio-1.mp3"),
    ],
)
def test_invent_filename(content_type: str, index: int, expected: str) -> None:
    assert invent_filename(content_type, index) == expected


def _part(header_block: bytes) -> email.message.Message:
    return email.message_from_bytes(header_block + b"\n\nbody\n")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (b'Content-Disposition: attachment; filename="plain.txt"', "plain.txt"),
        (b"Content-Type: text/plain; name=fromtype.txt", "fromtype.txt"),
        (
            b'Content-Type: text/plain; name="type.txt"\nContent-Disposition: attachment; filename="disp.txt"',
            "disp.txt",
        ),
        # RFC 2231 with charset and language.
        (b"Content-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf", "résumé.pdf"),
        (b"Content-Disposition: attachment; filename*=iso-8859-1'de'Gr%FC%DFe.txt", "Grüße.txt"),
        # RFC 2231 continuations, plain and encoded.
        (b'Content-Disposition: attachment; filename*0="long"; filename*1="name.txt"', "longname.txt"),
        (
            b"Content-Disposition: attachment;\n filename*0*=UTF-8''%E6%96%B0%E3%81%97;\n filename*1*=%E3%81%84.txt",
            "新しい.txt",
        ),
        # RFC 2047 encoded words inside a parameter (forbidden, but what Outlook sends).
        (b'Content-Type: application/pdf; name="=?utf-8?B?0JLQtdC00L7QvNC+0YHRgtC4LnBkZg==?="', "Ведомости.pdf"),
        (
            b'Content-Disposition: attachment; filename="=?koi8-r?B?98XEz83P09TJLnBkZg==?="',
            "Ведомости.pdf",
        ),
        (b'Content-Type: text/plain; name="=?iso-8859-1?Q?caf=E9.txt?="', "café.txt"),
        # Raw UTF-8 bytes in a parameter, as many mailers send them.
        (b'Content-Disposition: attachment; filename="ci\xc3\xafle.txt"', "ciïle.txt"),
        # Unknown charset in RFC 2231 falls back instead of failing.
        (b"Content-Disposition: attachment; filename*=x-unknown''abc.txt", "abc.txt"),
        (b"Content-Type: text/plain", None),
        (b'Content-Disposition: attachment; filename=""', None),
    ],
)
def test_part_filename(headers: bytes, expected: str | None) -> None:
    assert part_filename(_part(headers)) == expected
