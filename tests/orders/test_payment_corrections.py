"""Correcting desk payments recorded by mistake, and handing a household's credit back, as coordinators do it."""
from __future__ import annotations

import html
import threading
from datetime import time, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.db import utcnow
from app.extensions import db
from app.timeutil import local_to_utc, local_today
from orders.ledger import balance_cents, record_entry
from orders.payment_models import LedgerEntry, Payment, Receipt
from orders.payments import (
    PaymentAlreadyRecorded,
    PaymentError,
    amount_due_cents,
    cancel_desk_payment,
    cycle_money,
    hand_back_credit,
    record_desk_payment,
    spendable_balance_cents,
)
from tests.factories import CycleFactory, HouseholdFactory, OrderFactory, OrderLineFactory, UserFactory
from tests.helpers import csrf_token, login


def text(response) -> str:
    """The page as a person reads it."""
    return html.unescape(response.get_data(as_text=True))


def form_token(page) -> str:
    """The one-time token of the form on a page."""
    return page.get_data(as_text=True).split('name="token" type="hidden" value="')[1].split('"')[0]


def make_order(total_cents: int, household=None, **kwargs):
    """A confirmed order with one line worth total_cents."""
    order = OrderFactory(household_id=(household or HouseholdFactory()).id, **kwargs)
    OrderLineFactory(order=order, unit_price_cents=total_cents, base_price_cents=total_cents, quantity=Decimal(1))
    order.total_cents = total_cents
    db.session.flush()
    return order


@pytest.fixture()
def people(app):
    """A coordinator, a volunteer, and Marie of the Foyer Dupont."""
    dupont = HouseholdFactory(name="Foyer Dupont")
    people = {
        "coordinator": UserFactory(email="coord@example.org", name="Claire", roles=["coordinator"]),
        "volunteer": UserFactory(email="benevole@example.org", roles=["volunteer"]),
        "member": UserFactory(email="marie@example.org", household=dupont, roles=["member"]),
    }
    db.session.commit()
    return people


def adjustments() -> list[LedgerEntry]:
    """Every correction entry of the ledger."""
    db.session.expire_all()
    return list(db.session.scalars(sa.select(LedgerEntry).where(LedgerEntry.kind == "adjustment")))


def test_coordinator_cancels_a_cash_payment_taken_for_the_wrong_household(client, people):
    """Cash recorded on the Dupont order was the Martin's: cancelled with a note, recorded again on the right one."""
    dupont = people["member"].household
    martin = HouseholdFactory(name="Foyer Martin")
    wrong = make_order(1490, household=dupont)
    right = make_order(1490, household=martin, cycle_id=wrong.cycle_id)
    payment = record_desk_payment(wrong.id, "cash", 1490, received_by_id=people["volunteer"].id,
                                  cycle_id=wrong.cycle_id)
    db.session.commit()
    payment_id, wrong_id, right_id = payment.id, wrong.id, right.id
    assert amount_due_cents(wrong_id) == 0 and db.session.query(Receipt).count() == 1

    login(client, people["coordinator"].email)
    account = text(client.get(f"/commandes/soldes/{dupont.id}"))
    assert "Annuler ce paiement" in account and f"/commandes/paiements/{payment_id}/annuler" in account
    url = f"/commandes/paiements/{payment_id}/annuler"
    page = client.get(url)
    assert "Pourquoi annuler ce paiement ?" in text(page) and "14,90" in text(page)
    data = {"csrf_token": csrf_token(page.data), "token": form_token(page), "note": "espèces du Foyer Martin"}
    done = text(client.post(url, data=data, follow_redirects=True))
    assert f"Paiement annulé : la commande n° {wrong_id} doit de nouveau 14,90" in done
    # The account history shows the correction with its note; the payment is marked, not deleted.
    assert "Correction" in done and "espèces du Foyer Martin" in done and "Annulé" in done

    db.session.expire_all()
    cancelled = db.session.get(Payment, payment_id)
    assert (cancelled.status, cancelled.cancel_note, cancelled.cancelled_by_id) == (
        "cancelled", "espèces du Foyer Martin", people["coordinator"].id)
    assert cancelled.cancelled_at is not None and cancelled.amount_cents == 1490
    [entry] = adjustments()
    assert (entry.household_id, entry.amount_cents, entry.order_id, entry.created_by_id) == (
        dupont.id, -1490, wrong_id, people["coordinator"].id)
    assert entry.reference == f"payment:{payment_id}:cancelled"
    assert "espèces" in entry.note and "espèces du Foyer Martin" in entry.note
    assert amount_due_cents(wrong_id) == 1490
    assert balance_cents(dupont.id) == -1490  # the order is charged and unpaid again

    # The receipt that said « payé » is replaced by one that says what is still due; the first stays.
    first, second = db.session.scalars(sa.select(Receipt).order_by(Receipt.number)).all()
    assert first.snapshot["paid_cents"] == 1490
    assert (second.replaces_id, second.snapshot["paid_cents"], second.snapshot["due_cents"]) == (first.id, 0, 1490)

    # The volunteer records the cash on the right order: the till and the money page count it once.
    record_desk_payment(right_id, "cash", 1490, received_by_id=people["volunteer"].id, cycle_id=wrong.cycle_id)
    db.session.commit()
    from pickup.services import cash_summary

    till = cash_summary(wrong.cycle_id)
    assert till.totals["cash"] == 1490 and till.counts["cash"] == 1
    money = cycle_money(wrong.cycle_id)
    assert money.paid_by_method["cash"] == 1490 and money.adds_up
    page = text(client.get(f"/commandes/argent?cycle={wrong.cycle_id}"))
    assert "Payé : Espèces" in page and "14,90" in page


def cycle_held_today():
    """A closed cycle whose distribution is today: money taken now goes into its till."""
    day, now = local_today(), utcnow()
    starts = local_to_utc(day, time(16, 30))
    return CycleFactory(opens_at=min(now, starts) - timedelta(days=5), closes_at=min(now, starts) - timedelta(days=1),
                        distribution_date=day, distribution_starts_at=starts,
                        distribution_ends_at=starts + timedelta(hours=3), status="closed")


def test_cash_left_selected_for_a_cheque_is_cancelled_and_the_cheque_recorded(client, people):
    order = make_order(2200, household=people["member"].household, cycle_id=cycle_held_today().id)
    cash = record_desk_payment(order.id, "cash", 2200, received_by_id=None, cycle_id=order.cycle_id)
    db.session.commit()
    login(client, people["coordinator"].email)
    desk = text(client.get(f"/commandes/{order.id}/paiement-accueil"))
    assert "Annuler ce paiement" in desk
    url = f"/commandes/paiements/{cash.id}/annuler"
    page = client.get(url)
    client.post(url, data={"csrf_token": csrf_token(page.data), "token": form_token(page),
                           "note": "« Espèces » resté coché : c'était un chèque"})
    desk = client.get(f"/commandes/{order.id}/paiement-accueil")
    done = text(client.post(f"/commandes/{order.id}/paiement-accueil", data={
        "csrf_token": csrf_token(desk.data), "token": form_token(desk), "method": "cheque", "amount": "22,00",
        "cheque_number": "1234567", "cheque_bank": "Crédit Mutuel"}, follow_redirects=True))
    assert "Paiement enregistré." in done and "Annulé" in done
    from pickup.services import cash_summary

    till = cash_summary(order.cycle_id)
    assert (till.totals["cash"], till.totals["cheque"]) == (0, 2200)
    assert [c.number for c in till.cheques] == ["1234567"]
    assert amount_due_cents(order.id) == 0
    assert balance_cents(order.household_id) == 0  # -22 charge, +22 cash, -22 correction, +22 cheque
    assert db.session.query(Payment).count() == 2  # nothing deleted
    latest = db.session.scalars(sa.select(Receipt).order_by(Receipt.number.desc())).first()
    assert [p["method"] for p in latest.snapshot["payments"]] == ["cheque"]


def test_the_same_cancel_form_sent_twice_cancels_once(client, people):
    order = make_order(800, household=people["member"].household)
    payment = record_desk_payment(order.id, "cash", 800, received_by_id=None)
    db.session.commit()
    login(client, people["coordinator"].email)
    url = f"/commandes/paiements/{payment.id}/annuler"
    page = client.get(url)
    data = {"csrf_token": csrf_token(page.data), "token": form_token(page), "note": "mauvais foyer"}
    first = text(client.post(url, data=data, follow_redirects=True))
    second = text(client.post(url, data=data, follow_redirects=True))
    assert "Paiement annulé" in first
    assert "Ce paiement est déjà annulé." in second
    assert len(adjustments()) == 1
    assert balance_cents(order.household_id) == -800
    assert db.session.query(Receipt).count() == 2  # the first receipt and the one that replaces it, no third


def test_cancelling_needs_a_note_and_the_form_token(client, people):
    order = make_order(800, household=people["member"].household)
    payment = record_desk_payment(order.id, "cash", 800, received_by_id=None)
    db.session.commit()
    login(client, people["coordinator"].email)
    url = f"/commandes/paiements/{payment.id}/annuler"
    page = client.get(url)
    no_note = text(client.post(url, data={"csrf_token": csrf_token(page.data), "token": form_token(page),
                                          "note": "  "}))
    assert "Indiquez pourquoi ce paiement est annulé." in no_note
    stale = text(client.post(url, data={"csrf_token": csrf_token(page.data), "note": "mauvais foyer"}))
    assert "Le formulaire a expiré. Rechargez la page." in stale
    no_csrf = client.post(url, data={"token": form_token(page), "note": "mauvais foyer"})
    assert no_csrf.status_code in (200, 400)
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "succeeded"
    assert adjustments() == [] and amount_due_cents(order.id) == 0


def test_a_balance_payment_cancelled_gives_the_balance_back_to_spend(app, people):
    household = people["member"].household
    record_entry(household.id, 1500, "topup", "topup:test:1")
    order = make_order(1200, household=household)
    payment = record_desk_payment(order.id, "balance", 1200, received_by_id=None)
    db.session.commit()
    assert spendable_balance_cents(household.id) == 300
    cancel_desk_payment(payment.id, note="payé en espèces en fait", cancelled_by_id=people["coordinator"].id,
                        token="a1b2c3d4e5f6")
    db.session.commit()
    [entry] = adjustments()
    assert entry.amount_cents == 0 and "solde" in entry.note and "payé en espèces en fait" in entry.note
    assert balance_cents(household.id) == 300  # nothing moved: the balance payment moved no money
    assert spendable_balance_cents(household.id) == 1500 and amount_due_cents(order.id) == 1200


def test_card_payments_and_unpaid_ones_are_not_cancelled_here(app, people):
    order = make_order(900, household=people["member"].household)
    card = Payment(order_id=order.id, household_id=order.household_id, method="card", amount_cents=900,
                   status="succeeded", payment_intent="pi_test_1")
    pending = Payment(order_id=order.id, household_id=order.household_id, method="cash", amount_cents=100,
                      status="pending")
    db.session.add_all([card, pending])
    db.session.commit()
    with pytest.raises(PaymentError, match="se rembourse sur la carte"):
        cancel_desk_payment(card.id, note="erreur", cancelled_by_id=None, token="a1b2c3d4e5f6")
    db.session.rollback()
    with pytest.raises(PaymentError, match="ne peut pas être annulé"):
        cancel_desk_payment(pending.id, note="erreur", cancelled_by_id=None, token="a1b2c3d4e5f6")
    db.session.rollback()
    assert adjustments() == []
    # The database refuses a cancelled card payment, or one without its note, whatever the code does.
    for payment_id, note in ((card.id, "erreur"), (pending.id, None)):
        with pytest.raises(sa.exc.IntegrityError):
            db.session.execute(sa.update(Payment).where(Payment.id == payment_id)
                               .values(status="cancelled", cancel_note=note, cancelled_at=sa.func.now()))
        db.session.rollback()


def test_coordinator_hands_credit_back_in_cash_and_by_cheque(client, people):
    household = people["member"].household
    record_entry(household.id, 1200, "topup", "topup:test:1", note="versement")
    db.session.commit()
    login(client, people["coordinator"].email)
    account = text(client.get(f"/commandes/soldes/{household.id}"))
    assert "Rendre l'avoir en espèces ou par chèque" in account
    url = f"/commandes/soldes/{household.id}/rendre"
    page = client.get(url)
    assert "Au plus 12,00" in text(page)
    too_much = text(client.post(url, data={"csrf_token": csrf_token(page.data), "token": form_token(page),
                                           "method": "cash", "amount": "12,01", "note": "départ"}))
    assert "On peut rendre au plus le solde du foyer (12,00" in too_much
    cheque_without_number = text(client.post(url, data={
        "csrf_token": csrf_token(page.data), "token": form_token(page), "method": "cheque", "amount": "5",
        "note": "départ"}))
    assert "Indiquez le numéro du chèque." in cheque_without_number
    no_note = text(client.post(url, data={"csrf_token": csrf_token(page.data), "token": form_token(page),
                                          "method": "cash", "amount": "5", "note": ""}))
    assert "Indiquez pourquoi cet argent est rendu." in no_note
    assert balance_cents(household.id) == 1200

    data = {"csrf_token": csrf_token(page.data), "token": form_token(page), "method": "cash", "amount": "5,00",
            "note": "rendu à sa demande"}
    done = text(client.post(url, data=data, follow_redirects=True))
    again = text(client.post(url, data=data, follow_redirects=True))
    assert "Remboursement enregistré : 5,00" in done
    assert "Remboursement" in done and "rendu en espèces : rendu à sa demande" in done
    assert "Ce remboursement est déjà enregistré." in again
    page = client.get(url)
    client.post(url, data={"csrf_token": csrf_token(page.data), "token": form_token(page), "method": "cheque",
                           "amount": "7", "cheque_number": "0000123", "note": "départ du foyer"})
    db.session.expire_all()
    refunds = db.session.scalars(sa.select(LedgerEntry).where(LedgerEntry.kind == "refund")
                                 .order_by(LedgerEntry.id)).all()
    assert [(e.amount_cents, e.note, e.created_by_id, e.order_id) for e in refunds] == [
        (-500, "rendu en espèces : rendu à sa demande", people["coordinator"].id, None),
        (-700, "rendu par chèque n° 0000123 : départ du foyer", people["coordinator"].id, None),
    ]
    assert balance_cents(household.id) == 0
    history = text(client.get(f"/commandes/soldes/{household.id}"))
    assert "rendu par chèque n° 0000123 : départ du foyer" in history
    assert "Rendre l'avoir en espèces ou par chèque" not in history
    # The household sees it too, on its own account.
    client.post("/compte/deconnexion", data={"csrf_token": csrf_token(client.get("/").data)})
    login(client, people["member"].email)
    mine = text(client.get("/commandes/solde"))
    assert "rendu en espèces : rendu à sa demande" in mine and "Annuler ce paiement" not in mine


@pytest.mark.parametrize("role", ["volunteer", "member"])
def test_only_coordinators_correct_payments_or_hand_credit_back(client, people, role):
    household = people["member"].household
    record_entry(household.id, 1000, "topup", "topup:test:1")
    order = make_order(500, household=household)
    payment = record_desk_payment(order.id, "cash", 500, received_by_id=None)
    db.session.commit()
    login(client, people[role].email)
    token = csrf_token(client.get("/").data)
    cancel = f"/commandes/paiements/{payment.id}/annuler"
    hand_back = f"/commandes/soldes/{household.id}/rendre"
    assert client.get(cancel).status_code == 403
    assert client.post(cancel, data={"csrf_token": token, "token": "a1b2c3d4e5f6", "note": "x"}).status_code == 403
    assert client.get(hand_back).status_code == 403
    assert client.post(hand_back, data={"csrf_token": token, "token": "a1b2c3d4e5f6", "method": "cash",
                                        "amount": "5", "note": "x"}).status_code == 403
    desk = client.get(f"/commandes/{order.id}/paiement-accueil")
    if role == "volunteer":
        assert "Annuler ce paiement" not in text(desk)
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "succeeded"
    assert db.session.query(LedgerEntry).filter(LedgerEntry.kind.in_(("adjustment", "refund"))).count() == 0
    assert balance_cents(household.id) == 1000


def test_hand_back_service_refuses_what_is_not_a_credit(app, people):
    household = people["member"].household
    order = make_order(700, household=household)
    record_desk_payment(order.id, "cash", 300, received_by_id=None)  # owes 4,00: no credit
    db.session.commit()
    with pytest.raises(PaymentError, match="au plus le solde du foyer"):
        hand_back_credit(household.id, 100, "cash", note="x", token="a1b2c3d4e5f6", created_by_id=None)
    db.session.rollback()
    with pytest.raises(PaymentError, match="espèces ou par chèque"):
        hand_back_credit(household.id, 100, "card", note="x", token="a1b2c3d4e5f6", created_by_id=None)
    db.session.rollback()
    with pytest.raises(PaymentError, match="Le formulaire a expiré"):
        hand_back_credit(household.id, 100, "cash", note="x", token="", created_by_id=None)
    db.session.rollback()
    assert db.session.query(LedgerEntry).filter_by(kind="refund").count() == 0


@pytest.mark.postgres_only
def test_two_coordinators_at_once_cancel_once_and_never_hand_back_more_than_the_balance(app, people):
    household = people["member"].household
    record_entry(household.id, 1000, "topup", "topup:test:1")
    order = make_order(600, household=HouseholdFactory())
    payment = record_desk_payment(order.id, "cash", 600, received_by_id=None)
    db.session.commit()
    # Threads read ids, never this session's objects.
    payment_id, household_id, order_id = payment.id, household.id, order.id
    jobs = [("cancel", str(n)) for n in range(4)] + [("hand_back", str(n)) for n in range(4)]
    barrier = threading.Barrier(len(jobs))
    outcomes: list[tuple[str, str]] = []
    lock = threading.Lock()

    def run(kind: str, n: str) -> None:
        with app.app_context():
            barrier.wait()
            try:
                if kind == "cancel":
                    cancel_desk_payment(payment_id, note="mauvais foyer", cancelled_by_id=None,
                                        token=f"cancel{n}token")
                else:  # each coordinator hands back the whole balance, each with their own form
                    hand_back_credit(household_id, 1000, "cash", note="départ", token=f"handback{n}token",
                                     created_by_id=None)
                db.session.commit()
                result = "done"
            except PaymentAlreadyRecorded:
                db.session.rollback()
                result = "already"
            except PaymentError:
                db.session.rollback()
                result = "refused"
            finally:
                db.session.remove()
            with lock:
                outcomes.append((kind, result))

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(r for k, r in outcomes if k == "cancel") == ["already"] * 3 + ["done"]
    assert sorted(r for k, r in outcomes if k == "hand_back") == ["done"] + ["refused"] * 3
    assert len(adjustments()) == 1
    assert balance_cents(household_id) == 0
    assert amount_due_cents(order_id) == 600


def test_cash_whose_surplus_already_paid_another_order_is_not_cancelled_first(app):
    """20 € cash on an order that shrank to 15 €; the 5 € surplus paid order B from the balance. Cancelling the
    cash alone would leave 5 € owed that no order shows: refused until B's balance payment is cancelled."""
    from orders.ledger import sync_order_charge

    household = HouseholdFactory()
    first = OrderFactory(household_id=household.id)
    line = OrderLineFactory(order=first, unit_price_cents=2000, base_price_cents=2000, quantity=Decimal(1))
    first.total_cents = 2000
    db.session.flush()
    cash = record_desk_payment(first.id, "cash", 2000, received_by_id=None)
    db.session.commit()
    line.quantity_allocated = Decimal("0.75")
    first.total_cents = 1500
    sync_order_charge(first.id)
    second = OrderFactory(household_id=household.id)
    OrderLineFactory(order=second, unit_price_cents=500, base_price_cents=500, quantity=Decimal(1))
    second.total_cents = 500
    db.session.flush()
    from_balance = record_desk_payment(second.id, "balance", 500, received_by_id=None)
    db.session.commit()

    with pytest.raises(PaymentError, match="annulez d'abord ce paiement par le solde"):
        cancel_desk_payment(cash.id, note="mauvais foyer", cancelled_by_id=None, token="abcdefgh12")
    db.session.rollback()
    assert db.session.get(Payment, cash.id).status == "succeeded"
    cancel_desk_payment(from_balance.id, note="suite", cancelled_by_id=None, token="abcdefgh13")
    cancel_desk_payment(cash.id, note="mauvais foyer", cancelled_by_id=None, token="abcdefgh14")
    db.session.commit()
    assert (amount_due_cents(first.id), amount_due_cents(second.id)) == (1500, 500)
    assert balance_cents(household.id) == -2000


def test_hand_back_keeps_its_method_and_the_distribution_held_that_day(client, people):
    """Away from a distribution the money left no till; on a distribution day it left that distribution's."""
    from tests.pickup.conftest import make_thursday

    household = people["member"].household
    record_entry(household.id, 1200, "topup", "topup:test:1")
    db.session.commit()
    login(client, people["coordinator"].email)
    url = f"/commandes/soldes/{household.id}/rendre"

    def hand_back(data):
        page = client.get(url)
        client.post(url, data={"csrf_token": csrf_token(page.data), "token": form_token(page), "note": "départ",
                               **data})
        return text(page)

    assert "Pas de distribution aujourd'hui" in hand_back({"method": "cash", "amount": "2"})
    thursday = make_thursday()
    db.session.commit()
    # A distribution the household has no bag in is not its desk: the money left no till there.
    assert "Pas de distribution aujourd'hui" in text(client.get(url))
    from tests.factories import OrderFactory

    OrderFactory(cycle_id=thursday.cycle.id, household_id=household.id, status="confirmed")
    db.session.commit()
    assert "sortent de la caisse de la distribution du" in hand_back(
        {"method": "cheque", "amount": "3", "cheque_number": "0000124"})
    hand_back({"method": "cash", "amount": "1"})
    db.session.expire_all()
    refunds = db.session.scalars(sa.select(LedgerEntry).where(LedgerEntry.kind == "refund")
                                 .order_by(LedgerEntry.id)).all()
    assert [(e.amount_cents, e.method, e.cheque_number, e.cycle_id) for e in refunds] == [
        (-200, "cash", None, None),
        (-300, "cheque", "0000124", thursday.cycle.id),
        (-100, "cash", None, thursday.cycle.id),
    ]
    # The money page of that distribution counts the cash that left its till.
    page = text(client.get(f"/commandes/argent?cycle={thursday.cycle.id}")).replace("\xa0", " ")
    assert 'id="rendu-cash">− 1,00 €' in page and 'id="rendu-cheque">− 3,00 €' in page


def test_with_two_sites_distributing_today_money_goes_to_the_households_own_till(app, people):
    from orders.payments import distribution_today
    from tests.pickup.conftest import make_thursday

    first, second = make_thursday(), make_thursday(tag=" bis")
    db.session.commit()
    assert distribution_today(first.martin.household_id).id == first.cycle.id
    assert distribution_today(second.martin.household_id).id == second.cycle.id
    # A household with no bag at either: no way to tell which till, so none.
    assert distribution_today(people["member"].household_id) is None
