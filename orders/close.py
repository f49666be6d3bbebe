"""Cycle close: close due cycles, then finalize them (allocate, totals, documents, outbox) in steps.

The pipeline is a list of FinalizeStep rows per cycle: "prepare", one "chunk:..." per document
part, and "finish". Each step commits its own work together with its "done" mark, so a run
killed at any point is finished by running it again (from the beat's safety net, the
coordinator's page, or ``flask cycles finalize ID``) without generating anything twice. Unlike
plain services these functions commit: progress must survive a crash.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _
from kombu.exceptions import OperationalError
from sqlalchemy.exc import IntegrityError

from app.db import utcnow
from app.extensions import db
from app.models import FinalizeStep
from orders.models import Cycle, Order, OrderLine
from pickup.models import Slot
from producers.models import Offer, Product

log = logging.getLogger("panier.close")

#: Orders that count at close; carts never confirmed are left out.
ACTIVE_ORDER_STATUSES = ("confirmed",)


class FinalizeError(Exception):
    """A cycle cannot be finalized now; the message is shown to the coordinator as is."""


def enqueue(task: str, *args) -> bool:
    """Send a workers.tasks task by name (after commit); False if the broker is unreachable."""
    import workers.tasks  # noqa: F401 - registers the tasks on this app

    celery_app = current_app.extensions["celery"]
    name = f"workers.tasks.{task}"
    try:
        # apply_async (not send_task) so task_always_eager runs it in-process in tests.
        celery_app.tasks[name].apply_async(args=args)
        return True
    except (OperationalError, OSError) as exc:
        # The beat's safety net re-enqueues stalled cycles, so nothing is lost.
        log.warning("close: could not enqueue %s%r (%s)", task, args, exc)
        return False


# --------------------------------------------------------------------------- close


def close_cycle(cycle_id: int, now: datetime | None = None, *, force: bool = False) -> bool:
    """Move an open cycle to closed (guarded); only past its deadline unless forced. Caller commits."""
    now = now or utcnow()
    query = sa.update(Cycle).where(Cycle.id == cycle_id, Cycle.status == "open")
    if not force:
        query = query.where(Cycle.closes_at <= now)
    # Closed early (forced), the deadline shown everywhere becomes the moment orders really stopped (unless the
    # week had not even opened: a deadline must stay after the opening).
    closes_at = sa.case((sa.and_(Cycle.closes_at > now, Cycle.opens_at < now), now), else_=Cycle.closes_at)
    return bool(db.session.execute(query.values(status="closed", closed_at=now, closes_at=closes_at)).rowcount)


def close_due_cycles(now: datetime | None = None) -> list[int]:
    """Close every open cycle whose deadline passed; returns the ids this call closed. Caller commits."""
    now = now or utcnow()
    due = db.session.scalars(
        sa.select(Cycle.id).where(Cycle.status == "open", Cycle.closes_at <= now).order_by(Cycle.id)
    ).all()
    return [cycle_id for cycle_id in due if close_cycle(cycle_id, now)]


def stalled_cycles(now: datetime | None = None) -> list[int]:
    """Closed cycles without an error and without progress for FINALIZE_STALE_SECONDS (lost task)."""
    now = now or utcnow()
    stale = current_app.config.get("FINALIZE_STALE_SECONDS") or os.environ.get("FINALIZE_STALE_SECONDS", "600")
    limit = now - timedelta(seconds=int(stale))
    last_step = (
        sa.select(sa.func.max(FinalizeStep.updated_at))
        .where(FinalizeStep.cycle_id == Cycle.id)
        .scalar_subquery()
    )
    return list(db.session.scalars(
        sa.select(Cycle.id).where(
            Cycle.status == "closed",
            Cycle.finalize_error.is_(None),
            Cycle.closed_at <= limit,
            sa.or_(last_step.is_(None), last_step <= limit),
        )
    ))


# --------------------------------------------------------------------------- finalize


@dataclass
class FinalizeResult:
    """What a finalize call did."""

    cycle_id: int
    status: str
    chunks_total: int = 0
    chunks_done: int = 0
    enqueued: int = 0
    notes: list[str] = field(default_factory=list)


def load_cycle(cycle_id) -> Cycle:
    """The cycle with this id (as typed by a person), or a FinalizeError saying it does not exist."""
    try:
        cycle_id = int(cycle_id)
    except (TypeError, ValueError):
        raise FinalizeError(_("Identifiant de cycle invalide : %(id)s.", id=cycle_id)) from None
    cycle = db.session.get(Cycle, cycle_id)
    if cycle is None:
        raise FinalizeError(_("Aucun cycle n°%(id)s.", id=cycle_id))
    return cycle


def _checked_cycle(cycle_id) -> Cycle:
    """The cycle to finalize, or a FinalizeError saying why not."""
    cycle = load_cycle(cycle_id)
    cycle_id = cycle.id
    if cycle.status in ("draft", "open"):
        raise FinalizeError(_(
            "Le cycle n°%(id)s est encore ouvert (date limite pas encore traitée) : "
            "fermez-le avant de le finaliser.", id=cycle_id))
    if cycle.status == "cancelled":
        raise FinalizeError(_("Le cycle n°%(id)s est annulé.", id=cycle_id))
    return cycle


#: Between what a coordinator reads of a failure and the technical detail (shown folded) in Cycle.finalize_error.
DETAIL_SEPARATOR = "\n\n"


def error_parts(stored: str) -> tuple[str, str]:
    """A stored finalize_error as (what the coordinator reads, the technical detail)."""
    message, _sep, detail = stored.partition(DETAIL_SEPARATOR)
    return message, detail


def record_error(cycle_id: int, message: str, detail: str) -> None:
    """Store the pipeline's last error on the cycle for the coordinator's page (commits): a French sentence,
    then the exception's text for whoever looks after the site (the page folds it away)."""
    db.session.rollback()
    stored = f"{message}{DETAIL_SEPARATOR}{detail}"[:4000]
    db.session.execute(sa.update(Cycle).where(Cycle.id == cycle_id).values(finalize_error=stored))
    db.session.commit()


def finalize_cycle(cycle_id: int, *, inline: bool = False) -> FinalizeResult:
    """Run or resume the close pipeline of a closed cycle.

    inline=True renders every chunk here, one after the other (CLI, tests); otherwise each
    pending chunk becomes a Celery task and the last one to finish triggers the finish step.
    """
    cycle = _checked_cycle(cycle_id)
    cycle_id = cycle.id
    if cycle.status != "closed":
        db.session.rollback()
        return FinalizeResult(cycle_id, cycle.status)
    try:
        notes = prepare_cycle(cycle_id)
        names = plan_chunks(cycle_id)
        pending = _pending_chunks(cycle_id)
        result = FinalizeResult(cycle_id, "closed", chunks_total=len(names),
                                chunks_done=len(names) - len(pending), notes=notes)
        if inline:
            for name in pending:
                run_chunk(cycle_id, name)
            finish_cycle(cycle_id)
        elif pending:
            result.enqueued = sum(enqueue("render_chunk", cycle_id, name) for name in pending)
        else:
            finish_cycle(cycle_id)
    except Exception as exc:
        log.exception("close: finalizing cycle %s failed", cycle_id)
        db.session.rollback()
        if db.session.scalar(sa.select(Cycle.finalize_error).where(Cycle.id == cycle_id)) is None:
            # run_chunk already stored a more precise message when a document failed.
            record_error(cycle_id, _("La finalisation a échoué. Relancez-la ; si l'échec se répète, transmettez le "
                                     "détail technique à la personne qui s'occupe du site."),
                         f"{type(exc).__name__}: {exc}")
        raise
    result.status = db.session.scalar(sa.select(Cycle.status).where(Cycle.id == cycle_id))
    return result


def reprocess(cycle_id: int) -> Cycle:
    """A coordinator asks to run the pipeline again: checks the cycle and clears its error. Caller commits."""
    cycle = _checked_cycle(cycle_id)
    if cycle.status != "closed":
        raise FinalizeError(_("Le cycle n°%(id)s est déjà finalisé.", id=cycle.id))
    cycle.finalize_error = None
    db.session.execute(
        sa.update(FinalizeStep).where(FinalizeStep.cycle_id == cycle.id).values(error=None)
    )
    return cycle


def _lock_cycle(cycle_id: int) -> Cycle:
    """The cycle row, locked for this transaction (PostgreSQL; SQLite's BEGIN IMMEDIATE locks all)."""
    return db.session.scalar(
        sa.select(Cycle).where(Cycle.id == cycle_id).with_for_update().execution_options(populate_existing=True)
    )


def _step(cycle_id: int, name: str) -> FinalizeStep | None:
    """One step row."""
    return db.session.scalar(
        sa.select(FinalizeStep).where(FinalizeStep.cycle_id == cycle_id, FinalizeStep.name == name)
        .execution_options(populate_existing=True)
    )


def _mark_done(cycle_id: int, name: str) -> None:
    """Record a step as done in the current transaction (insert or update)."""
    step = _step(cycle_id, name)
    if step is None:
        db.session.add(FinalizeStep(cycle_id=cycle_id, name=name, status="done", attempts=1,
                                    updated_at=utcnow()))
    else:
        step.status, step.error, step.updated_at = "done", None, utcnow()
        step.attempts += 1


def _is_done(cycle_id: int, name: str) -> bool:
    """Whether a step is already done."""
    step = _step(cycle_id, name)
    return step is not None and step.status == "done"


def active_orders_query(cycle_id: int):
    """Ids of the orders that count in a cycle."""
    return sa.select(Order.id).where(Order.cycle_id == cycle_id, Order.status.in_(ACTIVE_ORDER_STATUSES))


# --------------------------------------------------------------------------- step 1-2: prepare


def prepare_cycle(cycle_id: int) -> list[str]:
    """Allocate lines, bag numbers, totals, ledger and balance payments, once (commits)."""
    _lock_cycle(cycle_id)
    if _is_done(cycle_id, "prepare"):
        db.session.commit()
        return []
    notes = allocate_lines(cycle_id)
    assign_bag_numbers(cycle_id)
    recompute_totals(cycle_id)
    _mark_done(cycle_id, "prepare")
    db.session.commit()
    log.info("close: cycle %s prepared (%s)", cycle_id, "; ".join(notes) or "ok")
    return notes


def allocate_lines(cycle_id: int) -> list[str]:
    """Set quantity_allocated: ordered quantity, capped to stock, 0 for withdrawn products; bulk by orders.bulk."""
    notes: list[str] = []
    from orders import bulk  # read at call time: the close benchmark times allocate_bulk by wrapping it

    offers = db.session.execute(
        sa.select(Offer.id, Offer.stock_cap, Offer.active, Product.active, Product.case_size, Product.name)
        .join(Product, Product.id == Offer.product_id)
        .where(Offer.cycle_id == cycle_id)
    ).all()
    orders = active_orders_query(cycle_id)
    withdrawn, capped, plain = [], [], []
    for offer_id, cap, offer_active, product_active, case_size, name in offers:
        if case_size is not None:
            continue
        if not (offer_active and product_active):
            withdrawn.append(offer_id)
            notes.append(_("Produit retiré après commande, rien n'est livré : %(name)s", name=name))
        elif cap is not None:
            capped.append((offer_id, cap))
        else:
            plain.append(offer_id)
    lines = OrderLine.__table__
    if withdrawn:
        db.session.execute(
            lines.update().where(lines.c.order_id.in_(orders), lines.c.offer_id.in_(withdrawn))
            .values(quantity_allocated=0)
        )
    if plain:
        db.session.execute(
            lines.update().where(lines.c.order_id.in_(orders), lines.c.offer_id.in_(plain))
            .values(quantity_allocated=lines.c.quantity)
        )
    for offer_id, cap in capped:
        _allocate_capped(offer_id, cap, orders)
    bulk.allocate_bulk(cycle_id)
    return notes


def _allocate_capped(offer_id: int, cap: Decimal, orders) -> None:
    """Serve a stock-capped offer in order of ordering time until the stock runs out."""
    remaining = cap
    rows = db.session.execute(
        sa.select(OrderLine.id, OrderLine.quantity)
        .where(OrderLine.order_id.in_(orders), OrderLine.offer_id == offer_id)
        .order_by(OrderLine.ordered_at, OrderLine.id)
    ).all()
    updates = []
    for line_id, quantity in rows:
        given = min(quantity, max(remaining, Decimal(0)))
        remaining -= given
        updates.append({"id": line_id, "quantity_allocated": given})
    if updates:
        # One executemany by primary key rather than a statement per line.
        db.session.execute(sa.update(OrderLine).execution_options(synchronize_session=False), updates)


def assign_bag_numbers(cycle_id: int) -> None:
    """Number the bags 1..n by slot time, then household name (stable for the same orders)."""
    from app.models import Household

    rows = db.session.execute(
        sa.select(Order.id, Order.bag_number)
        .join(Household, Household.id == Order.household_id)
        .outerjoin(Slot, Slot.id == Order.slot_id)
        .where(Order.cycle_id == cycle_id, Order.status.in_(ACTIVE_ORDER_STATUSES))
        .order_by(Slot.starts_at.is_(None), Slot.starts_at, Household.name, Order.id)
    ).all()
    wanted = {order_id: number for number, (order_id, _bag) in enumerate(rows, start=1)}
    if all(bag == wanted[order_id] for order_id, bag in rows):
        return
    # Clear first: renumbering in place would trip the (cycle, bag_number) unique constraint.
    db.session.execute(sa.update(Order).where(Order.cycle_id == cycle_id).values(bag_number=None))
    db.session.execute(
        sa.update(Order).execution_options(synchronize_session=False),
        [{"id": order_id, "bag_number": number} for order_id, number in wanted.items()],
    )


def recompute_totals(cycle_id: int) -> None:
    """Order totals from allocated lines, then the ledger charges and balance payments."""
    order_ids = db.session.scalars(active_orders_query(cycle_id).order_by(Order.id)).all()
    from orders.payments import settle_balance_payments
    from orders.services import recompute_order_total

    for order_id in order_ids:
        recompute_order_total(order_id)
    settle_balance_payments(cycle_id)  # charges every order of the cycle (ledger sync) then pays from balances


# --------------------------------------------------------------------------- step 3: documents


def plan_chunks(cycle_id: int) -> list[str]:
    """Create the chunk steps of the cycle's documents once; returns every chunk name (commits)."""
    from orders.documents import chunk_names

    names = chunk_names(cycle_id)
    existing = set(db.session.scalars(sa.select(FinalizeStep.name).where(FinalizeStep.cycle_id == cycle_id)))
    missing = [name for name in names if name not in existing]
    if "finish" not in existing:
        missing.append("finish")
    try:
        for name in missing:
            db.session.add(FinalizeStep(cycle_id=cycle_id, name=name, status="pending", updated_at=utcnow()))
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # another worker planned the same chunks at the same moment
    return names


def _pending_chunks(cycle_id: int) -> list[str]:
    """Chunk steps not done yet."""
    return list(db.session.scalars(
        sa.select(FinalizeStep.name).where(
            FinalizeStep.cycle_id == cycle_id, FinalizeStep.name.like("chunk:%"),
            FinalizeStep.status == "pending",
        ).order_by(FinalizeStep.id)
    ))


def run_chunk(cycle_id: int, name: str) -> bool:
    """Render one chunk's documents and mark it done (commits); True if it was the last one pending.

    Rendering again replaces the same Document rows and files, so a chunk that runs twice
    (redelivered task, two workers) leaves the same result.
    """
    from orders.documents import render_chunk

    step = _step(cycle_id, name)
    if step is None:
        raise FinalizeError(_("Étape inconnue %(name)s pour le cycle n°%(id)s.", name=name, id=cycle_id))
    db.session.commit()
    if step.status != "done":
        try:
            render_chunk(cycle_id, name)
        except Exception as exc:
            log.exception("close: chunk %s of cycle %s failed", name, cycle_id)
            db.session.rollback()
            message = f"{type(exc).__name__}: {exc}"[:2000]
            db.session.execute(
                sa.update(FinalizeStep).where(FinalizeStep.id == step.id)
                .values(error=message, attempts=FinalizeStep.attempts + 1, updated_at=utcnow())
            )
            db.session.commit()
            record_error(cycle_id, _("Un document n'a pas pu être préparé (%(name)s). Relancez la finalisation ; si "
                                     "l'échec se répète, transmettez le détail technique à la personne qui s'occupe "
                                     "du site.", name=name), message)
            raise
        # The cycle lock makes "mark done, then count what is left" atomic across workers,
        # so exactly one worker sees zero left and claims the finish step.
        _lock_cycle(cycle_id)
        _mark_done(cycle_id, name)
        db.session.flush()
    else:
        _lock_cycle(cycle_id)
    left = db.session.scalar(
        sa.select(sa.func.count()).select_from(FinalizeStep).where(
            FinalizeStep.cycle_id == cycle_id, FinalizeStep.name.like("chunk:%"),
            FinalizeStep.status != "done",
        )
    )
    last = False
    if left == 0:
        # Not limited to one trigger: a redelivered chunk (its worker died after this commit but
        # before enqueueing finish) must be able to trigger it again; finish itself is guarded.
        last = bool(db.session.execute(
            sa.update(FinalizeStep).where(
                FinalizeStep.cycle_id == cycle_id, FinalizeStep.name == "finish",
                FinalizeStep.status == "pending",
            ).values(attempts=FinalizeStep.attempts + 1, updated_at=utcnow())
        ).rowcount)
    db.session.commit()
    return last


# --------------------------------------------------------------------------- steps 4-5: outbox, finalized


#: E-mails written per transaction by the finish step.
MESSAGES_PER_COMMIT = 200


def finish_cycle(cycle_id: int) -> bool:
    """Queue the e-mails, then move the cycle to finalized (guarded; commits).

    The e-mails are written in transactions of MESSAGES_PER_COMMIT: on SQLite one transaction
    for ten thousand households held the database's write lock for over 30 s, and every page
    waiting on it failed with "database is locked". Each e-mail has its key, so a finish run
    again (or twice at once) adds none twice. Returns True if this call finalized the cycle;
    refuses while chunks are pending.
    """
    from app.outbox import queue_messages
    from orders.documents import cycle_messages

    if db.session.scalar(sa.select(Cycle.status).where(Cycle.id == cycle_id)) != "closed" \
            or _pending_chunks(cycle_id):
        db.session.rollback()
        return False
    batch = []
    for spec in cycle_messages(cycle_id):
        batch.append(spec)
        if len(batch) == MESSAGES_PER_COMMIT:
            queue_messages(batch)
            db.session.commit()
            batch = []
    if batch:
        queue_messages(batch)
        db.session.commit()
    cycle = _lock_cycle(cycle_id)
    if cycle is None or cycle.status != "closed":
        db.session.rollback()
        return False
    _mark_done(cycle_id, "finish")
    moved = db.session.execute(
        sa.update(Cycle).where(Cycle.id == cycle_id, Cycle.status == "closed")
        .values(status="finalized", finalized_at=utcnow(), finalize_error=None)
    ).rowcount
    db.session.commit()
    if moved:
        log.info("close: cycle %s finalized", cycle_id)
        from app.outbox import request_delivery

        request_delivery()
    return bool(moved)


@dataclass
class Progress:
    """The pipeline's state for the coordinator's page."""

    status: str
    error: str | None
    done: int
    total: int
    failed_steps: list[FinalizeStep]


def progress(cycle_id: int) -> Progress:
    """Counts of done and planned steps, with the steps that failed."""
    cycle = db.session.get(Cycle, cycle_id)
    steps = db.session.scalars(sa.select(FinalizeStep).where(FinalizeStep.cycle_id == cycle_id)).all()
    return Progress(
        status=cycle.status if cycle else "",
        error=cycle.finalize_error if cycle else None,
        done=sum(1 for s in steps if s.status == "done"),
        total=len(steps),
        failed_steps=[s for s in steps if s.error],
    )
