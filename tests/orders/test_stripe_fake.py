"""A recording stand-in for Stripe's HTTP transport (only the transport: the library does the rest).

FakeStripeHTTP subclasses stripe.HTTPClient, so stripe.StripeClient encodes the requests, sends the
Idempotency-Key header and parses the answers exactly as in production. It answers like the API:
checkout.session and refund objects, the same object again for a repeated Idempotency-Key.
The module also signs webhook payloads with Stripe's own helper.
"""
from __future__ import annotations

import json
import secrets
import time
from urllib.parse import parse_qsl

import stripe

from app.extensions import db
from orders.payment_models import Payment

WEBHOOK_SECRET = "whsec_test_panier_secret"
SECRET_KEY = "sk_test_panier_fake_key"


class FakeStripeHTTP(stripe.HTTPClient):
    """Records every request and answers with realistic Stripe JSON."""

    name = "fake"

    def __init__(self):
        """Nothing recorded yet."""
        super().__init__()
        self.requests: list[dict] = []
        self._by_key: dict[str, tuple[str, int, dict]] = {}
        self.fail_next = False
        #: Sessions the household already paid (expire is refused for them, as Stripe does).
        self.completed: set[str] = set()

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        """Answer one API call (no network)."""
        params = dict(parse_qsl(post_data or "", keep_blank_values=True))
        key = (headers or {}).get("Idempotency-Key")
        self.requests.append({"method": method, "url": url, "headers": dict(headers or {}), "params": params})
        if key and key in self._by_key:
            return self._by_key[key]
        if self.fail_next:
            self.fail_next = False
            # A refusal Stripe does not retry (a 5xx would be retried by the library).
            body = {"error": {"type": "invalid_request_error", "code": "amount_too_small",
                              "message": "Amount must be at least 0,50 EUR (test)"}}
            return json.dumps(body), 400, {"Request-Id": "req_fail"}
        path = url.split("api.stripe.com", 1)[-1].split("?")[0]
        if method == "post" and path == "/v1/checkout/sessions":
            body = self._session(params)
        elif method == "post" and path == "/v1/refunds":
            body = self._refund(params)
        elif method == "post" and path.startswith("/v1/checkout/sessions/") and path.endswith("/expire"):
            session_id = path.split("/")[4]
            if session_id in self.completed:
                body = {"error": {"type": "invalid_request_error", "code": "checkout_session_not_open",
                                  "message": "Only Checkout Sessions with a status of open can be expired."}}
                return json.dumps(body), 400, {"Request-Id": "req_exp"}
            body = {"id": session_id, "object": "checkout.session", "status": "expired", "url": None,
                    "payment_status": "unpaid", "metadata": {}}
        else:
            body = {"error": {"type": "invalid_request_error", "message": f"no fake for {method} {path}"}}
            return json.dumps(body), 404, {"Request-Id": "req_404"}
        response = (json.dumps(body), 200, {"Request-Id": "req_" + secrets.token_hex(6)})
        if key:
            self._by_key[key] = response
        return response

    def request_stream(self, method, url, headers, post_data=None, *, _usage=None):
        """Streaming is not used by the app."""
        raise NotImplementedError

    def close(self):
        """Nothing to close."""

    @staticmethod
    def _session(params: dict) -> dict:
        """A checkout.session object as the API returns it after create."""
        session_id = "cs_test_" + secrets.token_hex(12)
        amount = int(params["line_items[0][price_data][unit_amount]"]) * int(params["line_items[0][quantity]"])
        metadata = {k[len("metadata["):-1]: v for k, v in params.items() if k.startswith("metadata[")}
        return {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": amount,
            "amount_total": amount,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "created": int(time.time()),
            "currency": params["line_items[0][price_data][currency]"],
            "customer_email": params.get("customer_email"),
            "expires_at": int(time.time()) + 86400,
            "livemode": False,
            "locale": params.get("locale"),
            "metadata": metadata,
            "mode": params.get("mode"),
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "success_url": params.get("success_url"),
            "url": f"https://checkout.stripe.com/c/pay/{session_id}#fidkdWxOYHwnPyd1blpxYHZxWjA0",
        }

    @staticmethod
    def _refund(params: dict) -> dict:
        """A refund object as the API returns it."""
        return {
            "id": "re_" + secrets.token_hex(12),
            "object": "refund",
            "amount": int(params["amount"]),
            "charge": "ch_" + secrets.token_hex(12),
            "created": int(time.time()),
            "currency": "eur",
            "metadata": {k[len("metadata["):-1]: v for k, v in params.items() if k.startswith("metadata[")},
            "payment_intent": params.get("payment_intent"),
            "reason": None,
            "status": "succeeded",
        }

    def calls(self, path: str) -> list[dict]:
        """Recorded requests to one API path."""
        return [r for r in self.requests if r["url"].endswith(path)]


def session_event(payment: Payment, event_type: str = "checkout.session.completed", *,
                  amount_total: int | None = None, payment_status: str = "paid",
                  payment_intent: str | None = None, event_id: str | None = None) -> dict:
    """A checkout.session.* event for the session behind a pending card payment."""
    return {
        "id": event_id or "evt_" + secrets.token_hex(12),
        "object": "event",
        "api_version": "2025-09-30.clover",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "type": event_type,
        "data": {"object": {
            "id": payment.provider_reference,
            "object": "checkout.session",
            "amount_total": payment.amount_cents if amount_total is None else amount_total,
            "client_reference_id": str(payment.order_id),
            "currency": "eur",
            "metadata": {"order_id": str(payment.order_id), "household_id": str(payment.household_id)},
            "mode": "payment",
            "payment_intent": payment_intent or f"pi_test_{payment.id:06d}",
            "payment_status": payment_status if event_type != "checkout.session.expired" else "unpaid",
            "status": "expired" if event_type == "checkout.session.expired" else "complete",
        }},
    }


def refund_event(payment_intent: str, amount: int, amount_refunded: int, *, event_id: str | None = None) -> dict:
    """A charge.refunded event (amount_refunded is cumulative, as Stripe sends it)."""
    return {
        "id": event_id or "evt_" + secrets.token_hex(12),
        "object": "event",
        "api_version": "2025-09-30.clover",
        "created": int(time.time()),
        "livemode": False,
        "type": "charge.refunded",
        "data": {"object": {
            "id": "ch_" + payment_intent[-12:],
            "object": "charge",
            "amount": amount,
            "amount_refunded": amount_refunded,
            "currency": "eur",
            "paid": True,
            "payment_intent": payment_intent,
            "refunded": amount_refunded >= amount,
            "status": "succeeded",
        }},
    }


def signed(event: dict, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> tuple[str, str]:
    """The JSON body and its Stripe-Signature header, made by Stripe's own signing helper."""
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)
    return payload, header


def deliver(client, event: dict, **kwargs):
    """POST a signed event to the webhook as Stripe would."""
    payload, header = signed(event, **kwargs)
    return client.post("/commandes/stripe/webhook", data=payload,
                       headers={"Stripe-Signature": header}, content_type="application/json")


def stripe_app_config(app_config: dict, fake: FakeStripeHTTP) -> dict:
    """Configure keys for a test app (the fake transport is attached after the app exists)."""
    app_config.update(STRIPE_SECRET_KEY=SECRET_KEY, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    return app_config


def attach(app, fake: FakeStripeHTTP) -> None:
    """Make the app's Stripe client use the fake transport."""
    app.extensions["stripe_http_client"] = fake
    db.session.flush()
