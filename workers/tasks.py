"""Celery tasks: they take ids, call services, and are safe to run twice."""
from __future__ import annotations

import logging

from celery import shared_task

from app.extensions import db

log = logging.getLogger("panier.workers")


@shared_task(name="workers.tasks.close_due_cycles")
def close_due_cycles() -> list[int]:
    """Close every cycle past its deadline, then enqueue finalize for it and for stalled ones."""
    from orders import close

    closed = close.close_due_cycles()
    db.session.commit()
    stalled = close.stalled_cycles()
    db.session.commit()
    for cycle_id in closed + [c for c in stalled if c not in closed]:
        if cycle_id in stalled:
            log.warning("workers: cycle %s made no progress, finalizing it again", cycle_id)
        close.enqueue("finalize_cycle", cycle_id)
    return closed


@shared_task(name="workers.tasks.finalize_cycle")
def finalize_cycle(cycle_id: int) -> str:
    """Run or resume the close pipeline of one cycle (chunks go to other tasks)."""
    from orders import close

    try:
        return close.finalize_cycle(cycle_id).status
    except close.FinalizeError as exc:
        # A refusal (still open, unknown id) is final: retrying would not change the answer.
        log.error("workers: finalize_cycle(%s) refused: %s", cycle_id, exc)
        db.session.rollback()
        return "refused"


@shared_task(name="workers.tasks.render_chunk")
def render_chunk(cycle_id: int, name: str) -> bool:
    """Render one document chunk; the last chunk to finish triggers the finish step."""
    from orders import close

    last = close.run_chunk(cycle_id, name)
    if last:
        close.enqueue("finish_cycle", cycle_id)
    return last


@shared_task(name="workers.tasks.finish_cycle")
def finish_cycle(cycle_id: int) -> bool:
    """Write the outbox and mark the cycle finalized (guarded)."""
    from orders import close

    return close.finish_cycle(cycle_id)


@shared_task(name="workers.tasks.send_outbox")
def send_outbox(limit: int | None = None) -> int:
    """Send the pending e-mails that are due."""
    from app.outbox import deliver_pending

    return deliver_pending(limit)


@shared_task(name="workers.tasks.generate_cycles")
def generate_cycles() -> None:
    """Create the coming weeks' cycles from the schedules."""
    from orders.services import generate_cycles as generate

    generate()
    db.session.commit()


@shared_task(name="workers.tasks.open_due_cycles")
def open_due_cycles() -> None:
    """Open the draft cycles whose opening time came."""
    from orders.services import open_due_cycles as open_due

    open_due()
    db.session.commit()
