# SPDX-License-Identifier: GPL-3.0-or-later
"""Contacts: the people casemail exchanges mail with."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from store.db import adopt, plain
from store.models import Contact


def address_key(address: str) -> str:
    """The key two spellings of one mailbox share.

    Strictly, only the domain of an address is case-insensitive (RFC 5321); in practice no mail
    provider hands out local parts that differ only in case, while customers do type "John.Doe@" and
    "john.doe@" for the same mailbox. Matching case-insensitively is what keeps one person one contact.
    """
    return address.strip().lower()


# Built once: intake looks up (and often adds) the sender of every mail.
_BY_KEY = select(Contact).where(Contact.address_key == bindparam("key"))
_INSERT = insert(Contact.__table__).returning(Contact.__table__.c.id)


def get_contact(s: Session, address: str) -> Contact | None:
    return s.scalar(_BY_KEY, {"key": address_key(address)})


def ensure_contact(
    s: Session, address: str, *, display_name: str = "", role: str = "customer", now: datetime
) -> Contact:
    """Find the contact for an address, creating it on first sight.

    The display name is filled from the first mail that gives one; later mails do not overwrite a name
    the person has set.
    """
    contact = get_contact(s, address)
    if contact is None:
        values = {"address": address.strip(), "address_key": address_key(address),
                  "display_name": display_name[:200], "role": role, "notify": "every", "bouncing": False,
                  "bounce_reason": None, "created_at": now}
        contact = adopt(s, Contact(id=plain(s).execute(_INSERT, values).scalar_one(), **values))
    elif display_name and not contact.display_name:
        contact.display_name = display_name[:200]
    if role == "staff" and contact.role != "staff":
        contact.role = "staff"
    return contact


def mark_bouncing(s: Session, address: str, *, reason: str, now: datetime) -> Contact:
    """Stop mailing an address that hard-bounced, until an operator clears it."""
    contact = ensure_contact(s, address, now=now)
    contact.bouncing = True
    contact.bounce_reason = reason[:2000]
    return contact


def clear_bouncing(s: Session, address: str) -> bool:
    contact = get_contact(s, address)
    if contact is None or not contact.bouncing:
        return False
    contact.bouncing = False
    contact.bounce_reason = None
    return True


def bouncing_contacts(s: Session) -> list[Contact]:
    return list(s.scalars(select(Contact).where(Contact.bouncing.is_(True)).order_by(Contact.address_key)))
