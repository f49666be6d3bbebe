"""Card payment through Stripe Checkout and its webhook, with Stripe's library and a fake transport."""
from decimal import Decimal

import pytest

from app.extensions import db
from orders.ledger import balance_cents, sync_order_charge
from orders.payment_models import LedgerEntry, Payment, Receipt, StripeEvent
from orders.payments import amount_due_cents
from tests.factories import (
    HouseholdFactory,
    OrderFactory,
    OrderLineFactory,
    UserFactory,
)
from tests.helpers import csrf_token, login
from tests.orders.test_stripe_fake import (
    SECRET_KEY,
    WEBHOOK_SECRET,
    FakeStripeHTTP,
    deliver,
    refund_event,
    session_event,
    signed,
)


@pytest.fixture()
def fake():
    """The recording Stripe transport."""
    return FakeStripeHTTP()


@pytest.fixture()
def app_config(app_config):
    """Stripe keys configured (test-mode values)."""
    app_config.update(STRIPE_SECRET_KEY=SECRET_KEY, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    return app_config


@pytest.fixture()
def stripe_app(app, fake):
    """The app with Stripe's HTTP transport replaced by the fake."""
    app.extensions["stripe_http_client"] = fake
    return app


@pytest.fixture()
def member_order(stripe_app):
    """A signed-up household with a confirmed order of 23,40 € (2 x 7,20 + 9,00)."""
    household = HouseholdFactory(name="Foyer Martin")
    user = UserFactory(email="lea@example.org", household=household, roles=["member"])
    order = OrderFactory(household_id=household.id)
    OrderLineFactory(order=order, unit_price_cents=720, base_price_cents=720, quantity=Decimal(2))
    OrderLineFactory(order=order, unit_price_cents=900, base_price_cents=900, quantity=Decimal(1))
    order.total_cents = 2340
    db.session.commit()
    return user, order


def start_checkout(client, order_id):
    """Press "Payer par carte" on the account page."""
    page = client.get("/commandes/solde")
    return client.post(f"/commandes/{order_id}/payer/carte", data={"csrf_token": csrf_token(page.data)})


def pay_by_card(client, order):
    """Start checkout and return the pending payment."""
    response = start_checkout(client, order.id)
    assert response.status_code == 303
    return db.session.query(Payment).filter_by(order_id=order.id, status="pending").one()


def test_checkout_session_for_the_exact_amount_and_double_click_makes_one(client, fake, member_order):
    user, order = member_order
    login(client, user.email)
    first = start_checkout(client, order.id)
    second = start_checkout(client, order.id)
    assert first.status_code == second.status_code == 303
    assert first.headers["Location"].startswith("https://checkout.stripe.com/c/pay/cs_test_")
    assert first.headers["Location"] == second.headers["Location"]
    calls = fake.calls("/v1/checkout/sessions")
    assert len(calls) == 1
    sent = calls[0]
    assert sent["params"]["line_items[0][price_data][unit_amount]"] == "2340"
    assert sent["params"]["line_items[0][price_data][currency]"] == "eur"
    assert sent["params"]["metadata[order_id]"] == str(order.id)
    assert sent["params"]["client_reference_id"] == str(order.id)
    assert sent["params"]["success_url"] == f"http://localhost/commandes/{order.id}/paiement/retour"
    assert sent["headers"]["Idempotency-Key"].startswith(f"panier-checkout-{order.id}-2340-")
    assert sent["headers"]["Authorization"] == f"Bearer {SECRET_KEY}"
    payment = db.session.query(Payment).one()
    assert (payment.status, payment.amount_cents, payment.method) == ("pending", 2340, "card")


def test_return_page_does_not_mark_paid_the_webhook_does(client, fake, member_order):
    user, order = member_order
    login(client, user.email)
    payment = pay_by_card(client, order)
    page = client.get(f"/commandes/{order.id}/paiement/retour?session_id={payment.provider_reference}")
    assert "Paiement en cours de confirmation" in page.get_data(as_text=True)
    assert amount_due_cents(order.id) == 2340

    client.post("/compte/deconnexion", data={"csrf_token": csrf_token(client.get("/").data)})
    # The household never comes back from its bank; Stripe calls the webhook anyway.
    response = deliver(client, session_event(payment))
    assert response.status_code == 200
    db.session.expire_all()
    assert amount_due_cents(order.id) == 0
    assert db.session.get(Payment, payment.id).status == "succeeded"
    assert balance_cents(order.household_id) == 0  # +23,40 paid, -23,40 charged
    assert db.session.query(Receipt).filter_by(order_id=order.id).count() == 1


def test_replayed_event_changes_nothing(client, fake, member_order):
    user, order = member_order
    login(client, user.email)
    payment = pay_by_card(client, order)
    event = session_event(payment)
    assert deliver(client, event).json["outcome"] == "applied"
    counts = (db.session.query(LedgerEntry).count(), db.session.query(StripeEvent).count())
    for _ in range(3):
        response = deliver(client, event)
        assert response.status_code == 200
        assert response.json["outcome"] == "duplicate"
    # The same session reported again under a new event id (Stripe resends): still paid once.
    assert deliver(client, session_event(payment, payment_intent=f"pi_test_{payment.id:06d}")).status_code == 200
    db.session.expire_all()
    assert db.session.query(LedgerEntry).count() == counts[0]
    assert db.session.query(Receipt).count() == 1


@pytest.mark.parametrize("how", ["forged", "stale", "other_secret", "missing", "garbage"])
def test_bad_signature_is_refused_and_writes_nothing(client, fake, member_order, how):
    user, order = member_order
    login(client, user.email)
    payment = pay_by_card(client, order)
    event = session_event(payment)
    payload, header = signed(event)
    if how == "forged":
        event["data"]["object"]["amount_total"] = 1
        payload = payload.replace('"amount_total": 2340', '"amount_total": 1')
    elif how == "stale":
        import time
        payload, header = signed(event, timestamp=int(time.time()) - 3600)
    elif how == "other_secret":
        payload, header = signed(event, secret="whsec_someone_else")
    elif how == "missing":
        header = ""
    else:
        header = "t=abc,v1=nothex"
    response = client.post("/commandes/stripe/webhook", data=payload,
                           headers={"Stripe-Signature": header}, content_type="application/json")
    assert response.status_code == 400
    db.session.expire_all()
    assert db.session.query(StripeEvent).count() == 0
    assert db.session.query(LedgerEntry).count() == 0
    assert db.session.get(Payment, payment.id).status == "pending"


def test_unknown_event_type_is_acknowledged_and_ignored(client, stripe_app):
    event = {"id": "evt_unknown_1", "object": "event", "type": "customer.created",
             "data": {"object": {"id": "cus_123", "object": "customer"}}}
    response = deliver(client, event)
    assert response.status_code == 200
    assert response.json["outcome"] == "ignored"
    assert db.session.query(StripeEvent).one().status == "ignored"
    assert db.session.query(LedgerEntry).count() == 0


def test_amount_mismatch_is_flagged_not_paid(client, fake, member_order):
    user, order = member_order
    login(client, user.email)
    payment = pay_by_card(client, order)
    response = deliver(client, session_event(payment, amount_total=2000))
    assert response.json["outcome"] == "flagged"
    db.session.expire_all()
    flagged = db.session.get(Payment, payment.id)
    assert (flagged.status, flagged.received_cents) == ("flagged", 2000)
    assert amount_due_cents(order.id) == 2340
    assert db.session.query(LedgerEntry).count() == 0
    coordinator = UserFactory(email="coord@example.org", roles=["coordinator"])
    db.session.commit()
    client.post("/compte/deconnexion", data={"csrf_token": csrf_token(client.get("/").data)})
    login(client, coordinator.email)
    page = client.get(f"/commandes/argent?cycle={order.cycle_id}")
    text = page.get_data(as_text=True)
    assert "Paiements par carte à vérifier" in text
    assert "20,00" in text and "23,40" in text
    # Checked in Stripe's dashboard: the coordinator counts the 20,00 received.
    done = client.post(f"/commandes/paiements/{payment.id}/accepter", data={"csrf_token": csrf_token(page.data)},
                       follow_redirects=True).get_data(as_text=True)
    assert "Paiement accepté" in done
    db.session.expire_all()
    assert amount_due_cents(order.id) == 340
    assert balance_cents(order.household_id) == -340
    # A late redelivery of the mismatching event changes nothing.
    assert deliver(client, session_event(payment, amount_total=2000)).json["outcome"] == "applied"
    db.session.expire_all()
    assert db.session.query(LedgerEntry).filter_by(kind="payment").count() == 1


def test_expired_after_completed_does_not_unpay(client, fake, member_order):
    user, order = member_order
    login(client, user.email)
    payment = pay_by_card(client, order)
    deliver(client, session_event(payment))
    deliver(client, session_event(payment, "checkout.session.expired"))
    deliver(client, session_event(payment, "checkout.session.async_payment_failed"))
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "succeeded"
    assert amount_due_cents(order.id) == 0


def test_expired_session_lets_the_household_try_again_with_a_new_session(client, fake, member_order):
    user, order = member_order
    login(client, user.email)
    payment = pay_by_card(client, order)
    deliver(client, session_event(payment, "checkout.session.expired"))
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "expired"
    again = start_checkout(client, order.id)
    assert again.status_code == 303
    keys = [c["headers"]["Idempotency-Key"] for c in fake.calls("/v1/checkout/sessions")]
    assert len(keys) == 2 and keys[0] != keys[1]


def test_async_payment_is_paid_only_when_it_succeeds(client, fake, member_order):
    user, order = member_order
    login(client, user.email)
    payment = pay_by_card(client, order)
    deliver(client, session_event(payment, payment_status="unpaid"))
    db.session.expire_all()
    assert amount_due_cents(order.id) == 2340
    deliver(client, session_event(payment, "checkout.session.async_payment_succeeded"))
    db.session.expire_all()
    assert amount_due_cents(order.id) == 0


def test_async_payment_failure_leaves_the_order_due(client, fake, member_order):
    user, order = member_order
    login(client, user.email)
    payment = pay_by_card(client, order)
    deliver(client, session_event(payment, payment_status="unpaid"))
    deliver(client, session_event(payment, "checkout.session.async_payment_failed"))
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "failed"
    assert amount_due_cents(order.id) == 2340
    assert db.session.query(LedgerEntry).filter_by(kind="payment").count() == 0


def test_shrunk_order_goes_to_balance_then_back_to_card_on_request(client, fake, member_order):
    user, order = member_order
    login(client, user.email)
    payment = pay_by_card(client, order)
    deliver(client, session_event(payment))
    # Thursday: one 9,00 item is missing; the difference goes to the balance by default.
    line = order.lines[1]
    line.quantity_prepared = Decimal(0)
    line.missing = True
    sync_order_charge(order.id)
    db.session.commit()
    assert balance_cents(order.household_id) == 900
    assert amount_due_cents(order.id) == 0

    coordinator = UserFactory(email="coord@example.org", roles=["coordinator"])
    db.session.commit()
    client.post("/compte/deconnexion", data={"csrf_token": csrf_token(client.get("/").data)})
    login(client, coordinator.email)
    url = f"/commandes/soldes/{order.household_id}"
    page = client.get(url)
    assert "Rembourser sur la carte" in page.get_data(as_text=True)
    too_much = client.post(url + "/rembourser", data={"csrf_token": csrf_token(page.data), "amount": "9,01"},
                           follow_redirects=True)
    assert "au plus 9,00" in too_much.get_data(as_text=True)
    assert fake.calls("/v1/refunds") == []
    done = client.post(url + "/rembourser", data={"csrf_token": csrf_token(page.data), "amount": "9,00"},
                       follow_redirects=True)
    assert "Remboursement envoyé sur la carte" in done.get_data(as_text=True)
    refunds = fake.calls("/v1/refunds")
    assert len(refunds) == 1
    assert refunds[0]["params"]["amount"] == "900"
    assert refunds[0]["params"]["payment_intent"] == f"pi_test_{payment.id:06d}"
    assert refunds[0]["headers"]["Idempotency-Key"].startswith(f"panier-refund-{payment.id}-")
    db.session.expire_all()
    assert balance_cents(order.household_id) == 0
    assert db.session.query(LedgerEntry).filter_by(kind="refund").one().amount_cents == -900

    # Stripe then reports the refund: already counted, nothing new.
    deliver(client, refund_event(f"pi_test_{payment.id:06d}", 2340, 900))
    db.session.expire_all()
    assert db.session.query(LedgerEntry).filter_by(kind="refund").count() == 1
    assert balance_cents(order.household_id) == 0


def test_refund_delivered_before_payment_is_applied_after_it(client, fake, member_order):
    user, order = member_order
    login(client, user.email)
    payment = pay_by_card(client, order)
    intent = f"pi_test_{payment.id:06d}"
    # A full refund made from Stripe's dashboard, delivered before the completion event.
    assert deliver(client, refund_event(intent, 2340, 2340)).json["outcome"] == "deferred"
    db.session.expire_all()
    assert db.session.query(LedgerEntry).count() == 0
    deliver(client, session_event(payment))
    db.session.expire_all()
    paid = db.session.get(Payment, payment.id)
    assert (paid.status, paid.refunded_cents) == ("succeeded", 2340)
    # Money came in and went back out: the order is owed again, the balance says so.
    assert amount_due_cents(order.id) == 2340
    assert balance_cents(order.household_id) == -2340
    assert db.session.query(StripeEvent).filter_by(status="deferred").count() == 0


def test_stripe_down_gives_a_french_message_and_no_payment(client, fake, member_order):
    user, order = member_order
    login(client, user.email)
    fake.fail_next = True
    response = start_checkout(client, order.id)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "paiement par carte est indisponible" in page
    assert db.session.query(Payment).count() == 0


def test_another_households_order_is_not_found(client, fake, member_order):
    _user, order = member_order
    stranger = UserFactory(email="autre@example.org", household=HouseholdFactory(), roles=["member"])
    db.session.commit()
    login(client, stranger.email)
    page = client.get("/commandes/solde")
    response = client.post(f"/commandes/{order.id}/payer/carte", data={"csrf_token": csrf_token(page.data)})
    assert response.status_code == 404
    assert fake.calls("/v1/checkout/sessions") == []


def test_order_changed_after_starting_checkout_closes_the_old_session(client, fake, member_order):
    user, order = member_order
    login(client, user.email)
    first = pay_by_card(client, order)
    # The household adds an item, then pays again: a new session for the new amount.
    OrderLineFactory(order=order, unit_price_cents=500, base_price_cents=500, quantity=Decimal(1))
    order.total_cents = 2840
    db.session.commit()
    assert start_checkout(client, order.id).status_code == 303
    sessions = fake.calls("/v1/checkout/sessions")
    assert [c["params"]["line_items[0][price_data][unit_amount]"] for c in sessions] == ["2340", "2840"]
    assert len(fake.calls(f"/v1/checkout/sessions/{first.provider_reference}/expire")) == 1
    db.session.expire_all()
    assert db.session.get(Payment, first.id).status == "expired"
    second = db.session.query(Payment).filter_by(status="pending").one()
    deliver(client, session_event(second))
    db.session.expire_all()
    assert amount_due_cents(order.id) == 0
    assert balance_cents(order.household_id) == 0


def test_session_lost_before_our_commit_is_rebuilt_from_the_webhook(client, fake, member_order):
    """Stripe made the session but our row was lost (crash): the paid webhook still counts the money."""
    user, order = member_order
    login(client, user.email)
    payment = pay_by_card(client, order)
    event = session_event(payment)
    db.session.delete(payment)
    db.session.commit()
    assert deliver(client, event).json["outcome"] == "applied"
    db.session.expire_all()
    rebuilt = db.session.query(Payment).one()
    assert (rebuilt.status, rebuilt.amount_cents, rebuilt.order_id) == ("succeeded", 2340, order.id)
    assert amount_due_cents(order.id) == 0
    # A session naming our order but another household is not ours: ignored.
    foreign = session_event(payment)
    foreign["data"]["object"]["id"] = "cs_test_foreign"
    foreign["data"]["object"]["metadata"]["household_id"] = "999"
    assert deliver(client, foreign).json["outcome"] == "ignored"


@pytest.mark.postgres_only
def test_parallel_deliveries_apply_the_payment_once(stripe_app, fake, member_order):
    """Stripe retries while the first delivery is still running: six deliveries at once, one payment."""
    import threading

    from orders.stripe_checkout import handle_event, start_card_payment

    _user, order = member_order
    payment = start_card_payment(order.id, order.household_id, success_url="http://x/ok", cancel_url="http://x/no")
    db.session.commit()
    same = session_event(payment)
    events = [same, same, same, session_event(payment), session_event(payment),
              session_event(payment, "checkout.session.async_payment_succeeded")]
    barrier = threading.Barrier(len(events))
    outcomes = []

    def receive(event):
        with stripe_app.app_context():
            barrier.wait()
            try:
                outcomes.append(handle_event(event).outcome)
                db.session.commit()
            finally:
                db.session.remove()

    threads = [threading.Thread(target=receive, args=(e,)) for e in events]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(outcomes) == 6
    assert outcomes.count("duplicate") == 2
    db.session.expire_all()
    assert db.session.query(LedgerEntry).filter_by(kind="payment").count() == 1
    assert db.session.query(StripeEvent).count() == 4
    assert db.session.query(Receipt).count() == 1
    assert amount_due_cents(order.id) == 0
    assert balance_cents(order.household_id) == 0
