# SPDX-License-Identifier: GPL-3.0-or-later
"""Measure casemail's reply stripping against the shared reply corpus.

Run from the repository root::

    .venv/bin/python bench/measure_replies.py [--corpus PATH] [--show-misses]

Every case under ``reply/`` is run through the real functions of ``intake.body``.
For ``eml`` inputs the first text/plain part is taken (transfer-decoded by the
standard library, policy default), falling back to the HTML part through
``html_to_text``; ``html`` inputs go through ``html_to_text`` first.  The result
of ``strip_quotes`` is compared with the expected text; talon's ``signature/``
cases test ``split_signature`` instead, as the corpus README says.  Comparison
follows baselines.md: strip each line and drop empty lines, or remove all
whitespace for the cases whose compare mode says so.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

# Upstreams whose expected text is the *visible* text: GitHub's parse_reply
# returns only fragments that are not hidden, and a signature fragment is
# hidden; zapier's port does the same; Discourse's trimmer elides signatures
# and mobile sign-offs.  Their cases are compared with
# split_signature(strip_quotes(text))[0], the BodyText.visible of extract_body.
# Talon's standard and HTML replies and mail-parser-reply's latest_reply strip
# quotations only, so theirs are compared with strip_quotes(text) as it is.
SIGNATURE_HIDING_ORIGINS = frozenset(
    {"gh-discourse-email_reply_trimmer", "gh-github-email_reply_parser", "gh-zapier-email-reply-parser"}
)

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    # The script is run as a file, so the repository root is not on the path by itself.
    sys.path.insert(0, str(REPO))

from intake.body import html_to_text, split_signature, strip_quotes  # noqa: E402


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one corpus case."""

    origin: str
    name: str
    matched: bool
    matched_quotes_only: bool
    ambiguous: bool
    got: str
    expected: str


def normalise(text: str, compare: str) -> str:
    """Bring a text into the form the case's compare mode prescribes."""
    if compare.startswith("whitespace"):
        return "".join(text.split())
    lines = (line.strip() for line in text.replace("\r\n", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


def _first_part(message: EmailMessage, subtype: str) -> str | None:
    for part in message.walk():
        if part.get_content_type() == f"text/{subtype}" and not part.is_attachment():
            try:
                content = part.get_content()
            except (LookupError, KeyError):
                payload = part.get_payload(decode=True)
                content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
            return str(content)
    return None


def eml_text(raw: bytes) -> str:
    """The first text/plain part of a message, or its HTML part converted to text."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    plain = _first_part(message, "plain")
    if plain is not None:
        return plain
    html = _first_part(message, "html")
    return html_to_text(html) if html is not None else ""


def run_case(sidecar: Path, origin: str) -> CaseResult:
    """Run one case through the real functions and compare it with its expectation."""
    spec = json.loads(sidecar.read_text(encoding="utf-8"))
    folder = sidecar.parent
    source = folder / spec["input"]
    fmt = spec["input_format"]
    if fmt == "eml":
        text = eml_text(source.read_bytes())
    elif fmt == "html":
        text = html_to_text(source.read_text(encoding="utf-8", errors="replace"))
    else:
        text = source.read_text(encoding="utf-8", errors="replace")
    languages = spec.get("languages")
    quotes_only = strip_quotes(text, languages=languages) if languages else strip_quotes(text)
    if "expected_signature_file" in spec:
        got, _signature = split_signature(text)
    elif origin in SIGNATURE_HIDING_ORIGINS:
        got, _signature = split_signature(quotes_only)
    else:
        got = quotes_only
    expected = (folder / spec["expected_reply_file"]).read_text(encoding="utf-8", errors="replace")
    compare = str(spec.get("compare", "strip"))
    return CaseResult(
        origin=origin,
        name=f"{folder.name}/{sidecar.name.removesuffix('.expected.json')}",
        matched=normalise(got, compare) == normalise(expected, compare),
        matched_quotes_only=normalise(quotes_only, compare) == normalise(expected, compare),
        ambiguous=bool(spec.get("ambiguous")),
        got=got,
        expected=expected,
    )


def iter_cases(corpus: Path) -> Iterator[CaseResult]:
    """Every reply case of the corpus, in a stable order."""
    reply = corpus / "reply"
    for sidecar in sorted(reply.rglob("*.expected.json")):
        yield run_case(sidecar, sidecar.relative_to(reply).parts[0])


def measure(corpus: Path) -> list[CaseResult]:
    """All case results; the corpus test uses this too."""
    return list(iter_cases(corpus))


def overall(results: list[CaseResult]) -> tuple[int, int]:
    """(matched, cases) over the non-ambiguous cases."""
    clear = [r for r in results if not r.ambiguous]
    return sum(r.matched for r in clear), len(clear)


def report(results: list[CaseResult]) -> str:
    """The per-origin table as Markdown."""
    rows = ["| origin | cases | matched | share | ambiguous (matched/cases) |", "|---|---|---|---|---|"]
    for origin in sorted({r.origin for r in results}):
        clear = [r for r in results if r.origin == origin and not r.ambiguous]
        vague = [r for r in results if r.origin == origin and r.ambiguous]
        hit = sum(r.matched for r in clear)
        share = f"{100 * hit / len(clear):.0f}%" if clear else "-"
        rows.append(f"| {origin} | {len(clear)} | {hit} | {share} | {sum(r.matched for r in vague)}/{len(vague)} |")
    hit, total = overall(results)
    rows.append(f"| **all non-ambiguous** | {total} | {hit} | {100 * hit / max(total, 1):.1f}% | |")
    literal = sum(r.matched_quotes_only for r in results if not r.ambiguous)
    rows.append("")
    rows.append(
        f"strip_quotes alone compared with every expected text: {literal}/{total} "
        f"({100 * literal / max(total, 1):.1f}%) of the non-ambiguous cases."
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    parser.add_argument("--show-misses", action="store_true", help="print got/expected for each miss")
    args = parser.parse_args(argv)
    if not (args.corpus / "reply").is_dir():
        print(f"no reply corpus under {args.corpus}", file=sys.stderr)
        return 2
    results = measure(args.corpus)
    if args.show_misses:
        for r in results:
            if not r.matched:
                print(f"===== MISS {r.name}{' (ambiguous)' if r.ambiguous else ''}")
                print("--- got\n" + r.got.strip() + "\n--- expected\n" + r.expected.strip())
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
