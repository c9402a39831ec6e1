# SPDX-License-Identifier: GPL-3.0-or-later
"""A coverage-guided fuzz target for the reading half of intake (atheris).

Every inbound mail is untrusted bytes. This target throws mutated bytes at everything that reads them
before a decision is made: parsing, classification (headers and delivery reports), the body text,
case fields, the subject tag reader and thread resolution. Any exception that escapes is a bug: those
functions promise to turn any input into data.

Run it (atheris is not a dependency of casemail; install it into the virtual environment first):

    .venv/bin/pip install atheris
    .venv/bin/python fuzz/fuzz_intake.py -max_total_time=300 fuzz/seeds

fuzz/seeds may be any folder of .eml files, e.g. a copy of some corpus messages; without one, atheris
starts from nothing. The same properties run on every test run through hypothesis (tests/unit and
tests/corpus), so this target is for long runs, not for CI.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from intake.body import extract_body
    from intake.classify import classify
    from intake.fields import extract_fields
    from intake.parse import parse
    from intake.resolve import ThreadFacts, resolve_thread
    from store.codes import Signer, clean_subject, find_case_numbers

SIGNER = Signer(b"fuzz-key-0123456789abcdef")
SUPPORT = ("support@example.com",)


def one_input(data: bytes) -> None:
    parsed = parse(data)
    classification = classify(parsed.tree, mail_from=None, loop_ids=frozenset({"fuzz"}))
    body = extract_body(parsed.text, parsed.html)
    extract_fields(parsed.subject, body.visible, parsed.headers)
    find_case_numbers(parsed.subject)
    clean_subject(parsed.subject)
    bounce_ids = classification.bounce.original_message_ids if classification.bounce else ()
    resolve_thread(
        ThreadFacts(header_ids=parsed.in_reply_to + parsed.references + bounce_ids,
                    recipients=tuple(a.address for a in (*parsed.to, *parsed.cc)),
                    text=body.full, subject=parsed.subject),
        SIGNER, SUPPORT,
    )


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
