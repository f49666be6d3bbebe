"""Pages of the cycle documents area of orders: list, download, reprocess, failed e-mails."""
from __future__ import annotations

import sqlalchemy as sa
from flask import (
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    send_file,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user

from app.auth.decorators import roles_required
from app.extensions import db
from app.models import Document
from orders import bp
from orders.models import Cycle


def _visible(documents: list[Document]) -> list[Document]:
    """The documents the signed-in user may download."""
    from orders.documents import may_read
    from pickup.services import current_distributions

    current_ids = {cycle.id for cycle in current_distributions()} if current_user.has_role("volunteer") else None
    return [d for d in documents if may_read(current_user, d, current_ids)]


@bp.route("/documents")
@roles_required("producer", "volunteer")
def documents():
    """Recent cycles with the documents the user may read (producers: their purchase orders)."""
    from orders.documents import cycle_documents

    cycles = db.session.scalars(
        sa.select(Cycle).where(Cycle.status.in_(("closed", "finalized", "distributed")))
        .order_by(Cycle.distribution_date.desc()).limit(12)
    ).all()
    rows = [(cycle, _visible(cycle_documents(cycle.id))) for cycle in cycles]
    return render_template("orders/documents.html", rows=[r for r in rows if r[1]])


@bp.route("/cycles/<int:cycle_id>/documents")
@roles_required("producer", "volunteer")
def cycle_documents(cycle_id: int):
    """One cycle's documents; the coordinator also sees progress, errors and unsent e-mails."""
    from app.outbox import problem_messages
    from orders import close
    from orders.documents import cycle_documents as all_documents
    from orders.documents import producers_without_email

    cycle = db.session.get(Cycle, cycle_id) or abort(404)
    docs = _visible(all_documents(cycle_id))
    coordinator = current_user.has_role("coordinator")
    if not docs and not coordinator:
        abort(404)
    return render_template(
        "orders/cycle_documents.html", cycle=cycle, documents=docs, coordinator=coordinator,
        progress=close.progress(cycle_id) if coordinator else None,
        messages=problem_messages(cycle_id) if coordinator else [],
        paper_producers=producers_without_email(cycle_id) if coordinator else [],
    )


@bp.route("/documents/<int:document_id>")
@roles_required("producer", "volunteer")
def download_document(document_id: int):
    """Send one stored document to a user allowed to read it."""
    from orders.documents import may_read

    document = db.session.get(Document, document_id)
    if document is None or not may_read(current_user, document):
        abort(404)
    try:
        return send_file(document.path, mimetype=document.content_type, as_attachment=True,
                         download_name=document.filename)
    except FileNotFoundError:
        current_app.logger.error("document %s missing on disk: %s", document.id, document.path)
        abort(404)


@bp.route("/cycles/<int:cycle_id>/retraiter", methods=["POST"])
@roles_required("coordinator")
def reprocess_cycle(cycle_id: int):
    """Run the close pipeline of a cycle again (after an error or a lost worker)."""
    from orders import close

    try:
        close.reprocess(cycle_id)
        db.session.commit()
    except close.FinalizeError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("orders.cycle_documents", cycle_id=cycle_id))
    try:
        queued = close.enqueue("finalize_cycle", cycle_id)
    except Exception as exc:  # noqa: BLE001 - an eager run's failure is stored on the cycle and shown
        current_app.logger.error("reprocess of cycle %s failed: %s", cycle_id, exc)
        queued = True
    if queued:
        flash(_("Finalisation relancée. Rechargez la page dans un moment."), "success")
    else:
        flash(_("Aucun worker joignable : lancez « flask cycles finalize %(id)s ».", id=cycle_id), "error")
    return redirect(url_for("orders.cycle_documents", cycle_id=cycle_id))


@bp.route("/courriels")
@roles_required("coordinator")
def outbox():
    """E-mails not sent yet or given up on, with a retry button."""
    from app.outbox import problem_messages

    return render_template("orders/outbox.html", messages=problem_messages())


@bp.route("/courriels/<int:message_id>/renvoyer", methods=["POST"])
@roles_required("coordinator")
def retry_message(message_id: int):
    """Put a failed e-mail back in the queue."""
    from app.outbox import request_delivery
    from app.outbox import retry_message as retry

    if retry(message_id):
        db.session.commit()
        request_delivery()
        flash(_("Le courriel sera renvoyé."), "success")
    else:
        flash(_("Ce courriel n'est pas en échec : rien à renvoyer."), "warning")
    return redirect(url_for("orders.outbox"))


@bp.app_template_global()
def finalize_error_parts(stored: str) -> tuple[str, str]:
    """orders.close.error_parts for the templates that show a close pipeline failure."""
    from orders.close import error_parts

    return error_parts(stored or "")
