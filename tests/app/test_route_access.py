"""Every route of the application against every role: who is sent to sign in, who is refused.

ACCESS below is the specification, written by hand: a new route fails
`test_every_route_has_an_expected_access` until someone decides who may open it.
Each route is called with ids that do not exist (so nothing is changed) and, for POST, a valid
CSRF token, so the answer shows the role check and nothing else:
  - anonymous visitors are sent to the sign-in page (except on public routes);
  - a signed-in user without the role gets 403;
  - a user with the role (coordinators hold every role) is let through: any answer but 401, 403 or 5xx.
"""
from __future__ import annotations

import re

import pytest

from tests.factories import HouseholdFactory, ProducerFactory, UserFactory
from tests.helpers import PASSWORD, csrf_token

PUBLIC = "public"
SIGNED_IN = "signed in"
ROLES = ("member", "producer", "volunteer", "coordinator")

ACCESS: dict[str, object] = {
    # Accounts
    "auth.login": PUBLIC,
    "auth.logout": SIGNED_IN,
    "auth.account": SIGNED_IN,
    "auth.reset_request": PUBLIC,
    "auth.reset_password": PUBLIC,
    "auth.accept_invitation": PUBLIC,
    "auth.users": ("coordinator",),
    "auth.edit_user": ("coordinator",),
    "auth.resend_invitation": ("coordinator",),
    "auth.households": ("coordinator",),
    "auth.edit_household": ("coordinator",),
    "auth.attach_member": ("coordinator",),
    "auth.detach_member": ("coordinator",),
    "main.home": SIGNED_IN,
    "main.set_language": PUBLIC,
    # Ordering
    "orders.cart": ("member",),
    "orders.history": ("member",),
    "orders.order_detail": ("member", "volunteer"),
    "orders.assist": ("volunteer",),
    "orders.assist_order": ("volunteer",),
    "orders.bulk_cases": SIGNED_IN,
    "orders.bulk_repackaging": ("volunteer",),
    "orders.cycles": ("coordinator",),
    "orders.cycles_generate": ("coordinator",),
    "orders.cycle_edit": ("coordinator",),
    "orders.cycle_cancel": ("coordinator",),
    "orders.cycle_close_now": ("coordinator",),
    "orders.reprocess_cycle": ("coordinator",),
    "orders.tiers": ("coordinator",),
    "orders.tier_households": ("coordinator",),
    "orders.tier_report": ("coordinator",),
    "orders.schedules": ("coordinator",),
    "orders.schedule_edit": ("coordinator",),
    "orders.site_edit": ("coordinator",),
    # AMAP contracts
    "orders.contracts": ("member",),
    "orders.contract_subscribe": ("member",),
    "orders.contract_absence": ("member",),
    "orders.contract_absence_cancel": ("member",),
    "orders.contract_absence_for": ("volunteer",),
    "orders.contract_absence_cancel_for": ("volunteer",),
    "orders.contract_admin": ("volunteer",),
    "orders.contract_detail": ("volunteer",),
    "orders.contract_instalment_step": ("volunteer",),
    "orders.contract_offer_detail": ("volunteer",),
    "orders.contract_offer_toggle": ("coordinator",),
    "orders.contract_cancel": ("coordinator",),
    "orders.contract_producer": ("producer",),
    # Documents and e-mail
    "orders.documents": ("producer", "volunteer"),
    "orders.cycle_documents": ("producer", "volunteer"),
    "orders.download_document": ("producer", "volunteer"),
    "orders.outbox": ("coordinator",),
    "orders.retry_message": ("coordinator",),
    # Money
    "orders.account": ("member",),
    "orders.pay_balance": ("member",),
    "orders.pay_card": ("member",),
    "orders.card_return": ("member",),
    "orders.receipt_pdf": SIGNED_IN,
    "orders.desk_payment": ("volunteer",),
    "orders.accept_payment": ("coordinator",),
    "orders.balances": ("coordinator",),
    "orders.household_ledger": ("coordinator",),
    "orders.topup": ("coordinator",),
    "orders.refund_card": ("coordinator",),
    "orders.cancel_payment": ("coordinator",),
    "orders.hand_back": ("coordinator",),
    "orders.money": ("coordinator",),
    "orders.stripe_webhook": PUBLIC,
    # Pickup
    "pickup.my_slot": ("member",),
    "pickup.choose_slot": ("member",),
    "pickup.slot_ics": ("member",),
    "pickup.prepare": ("volunteer",),
    "pickup.prepare_bag": ("volunteer",),
    "pickup.record_weight": ("volunteer",),
    "pickup.record_shortage": ("volunteer",),
    "pickup.mark_prepared": ("volunteer",),
    "pickup.desk": ("volunteer",),
    "pickup.desk_bag": ("volunteer",),
    "pickup.desk_pay": ("volunteer",),
    "pickup.desk_topup": ("volunteer",),
    "pickup.collect": ("volunteer",),
    "pickup.end_distribution": ("volunteer",),
    "pickup.rota": ("volunteer",),
    "pickup.rota_sign_up": ("volunteer",),
    "pickup.rota_withdraw": ("volunteer",),
    "pickup.cash_summary": ("volunteer",),
    "pickup.board": ("coordinator",),
    "pickup.no_shows": ("coordinator",),
    "pickup.no_show_outcome": ("coordinator",),
    "pickup.rota_defaults": ("coordinator",),
    "pickup.rota_needed": ("coordinator",),
    "pickup.rota_participation": ("coordinator",),
    "pickup.shortfalls": ("producer", "coordinator"),
    # Producers
    "producers.catalogue": ("producer",),
    "producers.product_edit": ("producer",),
    "producers.offers": ("producer",),
    "producers.demand": ("producer",),
    "producers.photo": ("member", "producer", "volunteer"),
    "producers.admin_producers": ("coordinator",),
    "producers.admin_import": ("coordinator",),
    "producers.admin_export": ("coordinator",),
}

#: Values for URL variables: ids that exist nowhere, so an allowed call changes nothing.
_VARIABLE = re.compile(r"<(?:(?P<converter>[a-z]+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>\w+)>")


def _url(rule) -> str:
    """The rule's path with harmless values in its variables."""

    def value(match: re.Match) -> str:
        converter, args = match.group("converter"), match.group("args")
        if converter == "int":
            return "999999"
        if converter == "any":
            return args.split(",")[0].strip().strip("'\"")
        if converter == "path":
            return "absent.jpg"
        return "jeton-inconnu"

    return _VARIABLE.sub(value, rule.rule)


def _calls(app) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) for every route; sign-out last, since it ends the session."""
    calls = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            calls.append((rule.endpoint, method, _url(rule)))
    return sorted(calls, key=lambda call: (call[0] == "auth.logout", call))


def _signed_in_client(app, role: str | None):
    """A client signed in with one role only (or anonymous), and its session's CSRF token."""
    client = app.test_client()
    token = csrf_token(client.get("/compte/connexion").data)
    if role is not None:
        # Coordinators hold every role, so theirs has what member and producer pages need as well.
        household = HouseholdFactory() if role in ("member", "coordinator") else None
        producer = ProducerFactory() if role in ("producer", "coordinator") else None
        user = UserFactory(email=f"{role}@example.org", roles=[role], household=household,
                           producer_id=producer.id if producer else None)
        from app.extensions import db

        db.session.commit()
        response = client.post("/compte/connexion", data={"email": user.email, "password": PASSWORD,
                                                          "csrf_token": token})
        assert response.status_code == 302, f"{role} could not sign in"
    return client, token


def _verdict(expected, role: str | None, status: int, location: str) -> str | None:
    """What is wrong with this answer, or None."""
    if status >= 500:
        return f"server error {status}"
    if expected == PUBLIC:
        return "sent to sign in on a public page" if "/compte/connexion" in location and status == 302 else None
    if role is None:
        return None if status == 302 and "/compte/connexion" in location else f"anonymous got {status}"
    allowed = expected == SIGNED_IN or role == "coordinator" or role in expected
    if allowed:
        return f"refused ({status})" if status in (401, 403) else None
    return None if status == 403 else f"not refused ({status})"


def test_every_route_has_an_expected_access(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    assert sorted(endpoints - set(ACCESS)) == [], "routes with no expected access in ACCESS"
    assert sorted(set(ACCESS) - endpoints) == [], "ACCESS names routes that do not exist"


@pytest.mark.parametrize("role", [None, *ROLES], ids=["anonymous", *ROLES])
def test_every_route_against_a_role(app, role):
    client, token = _signed_in_client(app, role)
    wrong = []
    for endpoint, method, url in _calls(app):
        if method == "GET":
            response = client.get(url)
        else:
            response = client.post(url, data={"csrf_token": token})
        problem = _verdict(ACCESS[endpoint], role, response.status_code, response.headers.get("Location", ""))
        if problem:
            wrong.append(f"{method} {url} ({endpoint}): {problem}")
    assert wrong == [], "\n".join(wrong)


#: Routes that take POSTs from outside the site, authenticated by their own signature.
CSRF_EXEMPT = {"orders.stripe_webhook"}


def test_every_form_post_needs_its_csrf_token(app):
    """A POST without the token (or with a forged one) is refused before any role or form logic."""
    client, token = _signed_in_client(app, "coordinator")
    wrong = []
    for endpoint, method, url in _calls(app):
        if method != "POST" or endpoint in CSRF_EXEMPT:
            continue
        for data in ({}, {"csrf_token": token[:-4] + "AAAA"}):
            status = client.post(url, data=data).status_code
            if status != 400:
                wrong.append(f"POST {url} ({endpoint}) with {data or 'no token'}: {status}")
    assert wrong == [], "\n".join(wrong)
