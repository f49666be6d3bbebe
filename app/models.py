"""Accounts (users, roles, households, price tiers) and the shared records: documents, outbox."""
from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from app.db import UTCDateTime, utcnow
from app.extensions import db

ROLES = ("member", "producer", "volunteer", "coordinator")


class PriceTier(db.Model):
    """A solidarity price tier: a markup on cost price, or pay-what-you-can with a minimum."""

    __tablename__ = "price_tier"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(80), unique=True)
    #: Markup on the offer price in basis points (1000 = +10 %); may be negative for a discount.
    markup_bp: Mapped[int] = mapped_column(default=0)
    #: Pay what you can: the household chooses its price, never below minimum_bp of the price.
    pay_what_you_can: Mapped[bool] = mapped_column(default=False)
    #: Lowest share of the price a pay-what-you-can household pays, in basis points (7000 = 70 %).
    minimum_bp: Mapped[int] = mapped_column(default=10000)
    is_default: Mapped[bool] = mapped_column(default=False)

    __table_args__ = (
        sa.CheckConstraint("markup_bp > -10000", name="markup_above_minus_100"),
        sa.CheckConstraint("minimum_bp >= 0 AND minimum_bp <= 10000", name="minimum_range"),
    )


class Household(db.Model):
    """A household (foyer): the unit that orders, collects and pays."""

    __tablename__ = "household"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120), index=True)
    #: Where confirmations go when no member has an address (neighbours without internet often have none).
    email: Mapped[Optional[str]] = mapped_column(sa.String(254))
    phone: Mapped[Optional[str]] = mapped_column(sa.String(40))
    notes: Mapped[Optional[str]] = mapped_column(sa.Text)
    price_tier_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("price_tier.id"))
    #: Slot start time (local "HH:MM") the household usually prefers; pre-selected in the cart.
    preferred_slot_time: Mapped[Optional[str]] = mapped_column(sa.String(5))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    price_tier: Mapped[Optional[PriceTier]] = relationship()
    members: Mapped[list["User"]] = relationship(back_populates="household")

    def contact_emails(self) -> list[str]:
        """Addresses to write to: the household's own, else its members'."""
        emails = [self.email] if self.email else []
        emails += [u.email for u in self.members if u.active and u.email not in emails]
        return emails

    @property
    def mail_locale(self) -> str:
        """The language to write to the household in: its first active member's choice, else French."""
        return next((u.locale for u in self.members if u.active and u.locale), None) or "fr"


class UserRole(db.Model):
    """One role held by a user; a user may hold several."""

    __tablename__ = "user_role"

    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(sa.String(20), primary_key=True)

    __table_args__ = (
        sa.CheckConstraint(
            "role IN ('member', 'producer', 'volunteer', 'coordinator')", name="known_role"
        ),
    )


class RoleHolder:
    """Role checks shared by the User model and the signed-in snapshot (app.auth.identity).

    Subclasses provide `roles`, the set of role names held.
    """

    def has_role(self, *roles: str) -> bool:
        """True if the user holds any of these roles (coordinators hold every right)."""
        held = self.roles
        return "coordinator" in held or any(r in held for r in roles)


def login_id(user_id: int, password_hash: str | None) -> str:
    """What a session keeps of its account: the id and a digest of the password hash. Changing the
    password (a reset after a phone is lost, say) changes it, which signs out every other session."""
    digest = hashlib.sha256((password_hash or "no-password").encode()).hexdigest()[:16]
    return f"{user_id}.{digest}"


class User(RoleHolder, UserMixin, db.Model):
    """A person who signs in; belongs to a household and/or a producer."""

    __tablename__ = "user"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    password_hash: Mapped[Optional[str]] = mapped_column(sa.String(256))
    household_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("household.id"), index=True)
    producer_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("producer.id"), index=True)
    #: Interface language chosen by the user ("fr" or "en").
    locale: Mapped[str] = mapped_column(sa.String(5), default="fr")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    household: Mapped[Optional[Household]] = relationship(back_populates="members")
    role_rows: Mapped[list[UserRole]] = relationship(cascade="all, delete-orphan", lazy="selectin")

    @property
    def roles(self) -> set[str]:
        """The names of the roles this user holds."""
        return {r.role for r in self.role_rows}

    def set_roles(self, roles: set[str] | list[str]) -> None:
        """Replace the user's roles."""
        wanted = set(roles)
        unknown = wanted - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles: {sorted(unknown)}")
        self.role_rows = [r for r in self.role_rows if r.role in wanted]
        for role in sorted(wanted - self.roles):
            self.role_rows.append(UserRole(role=role))

    def set_password(self, password: str) -> None:
        """Store a salted hash of the password, never the password."""
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        """True if the password matches the stored hash."""
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)

    @property
    def is_active(self) -> bool:  # Flask-Login reads this
        """Disabled accounts cannot sign in."""
        return self.active

    def get_id(self) -> str:  # Flask-Login keeps this in the session and the remember-me cookie
        """The id with a digest of the password hash (see login_id)."""
        return login_id(self.id, self.password_hash)


class Document(db.Model):
    """A rendered document of a cycle (PDF or CSV), stored on disk with its checksum."""

    __tablename__ = "document"

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(sa.ForeignKey("cycle.id"), index=True)
    #: purchase_order, purchase_order_csv, bag_slips, grid, repackaging, distribution_sheet, receipt
    kind: Mapped[str] = mapped_column(sa.String(40))
    #: Who may read it: "producer:<id>", "volunteer", "coordinator", "household:<id>".
    audience: Mapped[str] = mapped_column(sa.String(40))
    #: Which part of a chunked document this is ("producer:3", "slot:12:0", "all").
    chunk: Mapped[str] = mapped_column(sa.String(60), default="all")
    filename: Mapped[str] = mapped_column(sa.String(200))
    path: Mapped[str] = mapped_column(sa.String(500))
    content_type: Mapped[str] = mapped_column(sa.String(80), default="application/pdf")
    checksum: Mapped[str] = mapped_column(sa.String(64))
    pages: Mapped[Optional[int]]
    size_bytes: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        # Rendering twice replaces a document rather than adding one.
        sa.UniqueConstraint("cycle_id", "kind", "chunk", name="uq_document_cycle_kind_chunk"),
    )


class OutboxMessage(db.Model):
    """An e-mail waiting to be sent, unique per (cycle, recipient, kind): sent once per key."""

    __tablename__ = "outbox_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: e.g. "cycle:12:producer:3:purchase_order" or "reset:user:5:<nonce>"; the once-only key.
    key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    cycle_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("cycle.id"), index=True)
    recipient: Mapped[str] = mapped_column(sa.String(254))
    kind: Mapped[str] = mapped_column(sa.String(40))
    subject: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str] = mapped_column(sa.Text)
    #: JSON list of {"document_id": id} or {"filename", "content_type", "path"} to attach.
    attachments: Mapped[Optional[str]] = mapped_column(sa.Text)
    #: Message-ID header; the SMTP server sees the same id on a retry of the same message.
    message_id: Mapped[str] = mapped_column(sa.String(200))
    status: Mapped[str] = mapped_column(sa.String(12), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[Optional[str]] = mapped_column(sa.Text)
    next_attempt_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    #: Set while a worker holds the message, so two workers never send it at once.
    claimed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.CheckConstraint("status IN ('pending', 'sending', 'sent', 'failed')", name="known_status"),
    )


class FinalizeStep(db.Model):
    """One step of a cycle's close pipeline (prepare, each document chunk, finish) and whether it is done.

    Re-running the pipeline after a crash skips the steps already done; the last chunk to be
    done (found with a count under the cycle's row lock) triggers the finish step.
    """

    __tablename__ = "finalize_step"

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(sa.ForeignKey("cycle.id"), index=True)
    #: "prepare", "finish", or "chunk:<kind>:<part>" (e.g. "chunk:po:3", "chunk:slips:12:0").
    name: Mapped[str] = mapped_column(sa.String(80))
    status: Mapped[str] = mapped_column(sa.String(12), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[Optional[str]] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("cycle_id", "name", name="uq_finalize_step_cycle_name"),
        sa.CheckConstraint("status IN ('pending', 'done')", name="known_status"),
    )
