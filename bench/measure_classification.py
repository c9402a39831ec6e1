# SPDX-License-Identifier: GPL-3.0-or-later
"""Measure intake.classify against the labelled classification corpus.

Run from the repository root:

    .venv/bin/python bench/measure_classification.py [--corpus PATH]

The corpus defaults to ../shared/corpus beside the repository.  Every message listed in
classification/LABELS.tsv is read as bytes, parsed with email.message_from_bytes and
classified with mail_from taken from its Return-Path header (None without one), the way
a mail imported from a file would be.
"""

from __future__ import annotations

import argparse
import csv
import email
import email.message
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from intake.classify import Classification, MailKind, classify  # noqa: E402

LABELS = ("human", "auto-reply", "auto-generated", "bounce", "delay", "feedback-report")

# The corpus has no list or loop class: its "auto-generated" covers Precedence: list mail.
_AS_LABEL = {MailKind.LIST: "auto-generated", MailKind.OWN_LOOP: "auto-generated"}


@dataclass(frozen=True)
class Row:
    path: str
    expected: str
    predicted: str
    expected_recipients: tuple[str, ...]
    got_recipients: tuple[str, ...]
    reasons: tuple[str, ...]


def envelope_sender(msg: email.message.Message) -> str | None:
    value = msg.get("Return-Path")
    if value is None:
        return None
    text = str(value).strip()
    if text.replace(" ", "") in ("<>", ""):
        return ""
    return text.strip("<>")


def run(corpus: Path) -> list[Row]:
    rows: list[Row] = []
    with (corpus / "classification" / "LABELS.tsv").open(encoding="utf-8") as fh:
        for label in csv.DictReader(fh, delimiter="\t"):
            path = corpus / label["path"]
            sidecar = json.loads(Path(f"{path}.expected.json").read_text(encoding="utf-8"))
            msg = email.message_from_bytes(path.read_bytes())
            result: Classification = classify(msg, mail_from=envelope_sender(msg))
            expected_kind = sidecar["kind"]
            wanted = sidecar.get("delayed_recipients") if expected_kind == "delay" else None
            wanted = wanted or sidecar.get("failed_recipients") or []
            got = result.bounce.recipients if result.bounce else ()
            rows.append(
                Row(
                    path=label["path"],
                    expected=expected_kind,
                    predicted=_AS_LABEL.get(result.kind, str(result.kind)),
                    expected_recipients=tuple(sorted(a.lower() for a in wanted)),
                    got_recipients=tuple(sorted(got)),
                    reasons=result.reasons,
                )
            )
    return rows


def report(rows: list[Row]) -> str:
    lines: list[str] = []
    matrix = Counter((r.expected, r.predicted) for r in rows)
    width = max(len(k) for k in LABELS) + 1
    lines.append("confusion matrix (rows: expected, columns: predicted)")
    lines.append(" " * width + " ".join(f"{k[:8]:>8}" for k in LABELS))
    for exp in LABELS:
        lines.append(f"{exp:<{width}}" + " ".join(f"{matrix[(exp, pred)]:>8}" for pred in LABELS))
    lines.append("")
    lines.append(f"{'class':<{width}} precision    recall   support")
    for k in LABELS:
        tp = matrix[(k, k)]
        predicted = sum(v for (e, p), v in matrix.items() if p == k)
        support = sum(v for (e, p), v in matrix.items() if e == k)
        precision = tp / predicted if predicted else float("nan")
        recall = tp / support if support else float("nan")
        lines.append(f"{k:<{width}} {precision:9.3f} {recall:9.3f} {support:9d}")
    lines.append("")
    bd = {"bounce", "delay"}
    bd_rows = [r for r in rows if r.expected in bd]
    bd_hit = sum(1 for r in bd_rows if r.predicted in bd)
    bd_pred = sum(1 for r in rows if r.predicted in bd)
    bd_tp = sum(1 for r in rows if r.predicted in bd and r.expected in bd)
    lines.append(f"bounce+delay recall: {bd_hit}/{len(bd_rows)} = {bd_hit / max(len(bd_rows), 1):.3f}")
    lines.append(f"bounce+delay precision: {bd_tp}/{bd_pred} = {bd_tp / max(bd_pred, 1):.3f}")
    humans = [r for r in rows if r.expected == "human"]
    wrong_humans = [r for r in humans if r.predicted != "human"]
    lines.append(f"humans misclassified: {len(wrong_humans)} of {len(humans)}")
    auto = [r for r in rows if r.expected != "human"]
    missed_auto = [r for r in auto if r.predicted == "human"]
    lines.append(f"automatic mail called human: {len(missed_auto)} of {len(auto)}")
    with_rcpt = [r for r in bd_rows if r.expected_recipients and r.predicted in bd]
    match = sum(1 for r in with_rcpt if r.got_recipients == r.expected_recipients)
    lines.append(f"recipients match exactly: {match}/{len(with_rcpt)} (recognised bounces/delays with expected addresses)")
    lines.append("")
    lines.append("misclassified:")
    for r in rows:
        if r.expected != r.predicted:
            lines.append(f"  {r.path}: expected {r.expected}, got {r.predicted} ({'; '.join(r.reasons)})")
    lines.append("recipient mismatches:")
    for r in with_rcpt:
        if r.got_recipients != r.expected_recipients:
            lines.append(f"  {r.path}: expected {list(r.expected_recipients)}, got {list(r.got_recipients)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    args = parser.parse_args(argv)
    labels = args.corpus / "classification" / "LABELS.tsv"
    if not labels.is_file():
        print(f"no corpus at {args.corpus} (classification/LABELS.tsv missing)", file=sys.stderr)
        return 2
    print(report(run(args.corpus)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
