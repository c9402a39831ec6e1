# SPDX-License-Identifier: GPL-3.0-or-later
"""Which case does a mail belong to? (pure)

Every signal is read, strongest first, and the decision records which one matched:

1. "message-id": In-Reply-To or References name a Message-ID that casemail minted and signed.
2. "reply-address": a recipient is a signed plus-address (support+00000123.sig@...).
3. "footer": the body carries the signed token from the footer of our mails (it survives clients and
   servers that rewrite or drop Message-IDs).
4. "subject": the subject carries a case tag. A tag is not signed: whether the sender may write into
   that case is decided later, from who the sender is.
5. "new": none of the above.

A mail whose signals of the winning strength name two different cases, or that carries one of our
tokens with a signature that does not verify (and no good one), is not guessed at: it becomes a new
case, and the decision says what it referenced and why it was not threaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from store.codes import Signer, TokenCheck, find_case_numbers


@dataclass(frozen=True)
class ThreadFacts:
    header_ids: tuple[str, ...]     # In-Reply-To first, then References
    recipients: tuple[str, ...]     # envelope recipients, then To and Cc addresses
    text: str                       # the full text of the mail (quoted history included)
    subject: str


@dataclass(frozen=True)
class ThreadDecision:
    case_number: int | None
    matched_by: str
    signed: bool = False
    note: bool = False
    referenced: tuple[int, ...] = ()
    refused: str | None = None


def _numbers(checks: Iterable[TokenCheck]) -> tuple[int, ...]:
    seen: dict[int, None] = {}
    for c in checks:
        seen.setdefault(c.case_number, None)
    return tuple(seen)


def resolve_thread(facts: ThreadFacts, signer: Signer, support_addresses: Sequence[str]) -> ThreadDecision:
    """Decide which case a mail continues; see the module docstring for the order of signals."""
    header = [c for c in (signer.read_message_id(i) for i in facts.header_ids) if c is not None]
    address = [c for c in (signer.read_reply_address(r, support_addresses) for r in facts.recipients)
               if c is not None]
    footer = list(signer.find_footer_tokens(facts.text))
    tagged = find_case_numbers(facts.subject)

    referenced = _numbers([*header, *address, *footer])
    referenced = tuple(dict.fromkeys([*referenced, *tagged]))
    forged = [c for c in (*header, *address) if not c.valid]

    for name, checks in (("message-id", header), ("reply-address", address), ("footer", footer)):
        good = [c for c in checks if c.valid]
        numbers = _numbers(good)
        if len(numbers) == 1:
            note = any(c.note for c in good)
            return ThreadDecision(numbers[0], name, signed=True, note=note, referenced=referenced)
        if len(numbers) > 1:
            listed = ", ".join(str(n) for n in numbers)
            return ThreadDecision(None, "new", referenced=referenced,
                                  refused=f"{name} signals name more than one case ({listed})")

    if forged:
        return ThreadDecision(None, "new", referenced=referenced,
                              refused=f"a token for case {forged[0].case_number} has a bad signature")
    if len(tagged) == 1:
        return ThreadDecision(tagged[0], "subject", referenced=referenced)
    if len(tagged) > 1:
        listed = ", ".join(str(n) for n in tagged)
        return ThreadDecision(None, "new", referenced=referenced,
                              refused=f"the subject names more than one case ({listed})")
    return ThreadDecision(None, "new", referenced=referenced)
