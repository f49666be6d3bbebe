"""Account mails go through a real SMTP server (aiosmtpd) and their links work."""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from app.extensions import db
from app.outbox import deliver_pending
from tests.app.conftest import Inbox
from tests.factories import HouseholdFactory, UserFactory
from tests.helpers import login, post_form
from tests.servers import free_port


def _link(message) -> str:
    """The path of the link in a mail."""
    match = re.search(r"http://localhost(/compte/\S+)", message.get_content())
    assert match
    return match.group(1)


def test_reset_mail_arrives_once_and_its_link_works(app, client, inbox):
    UserFactory(email="claire@example.org", name="Claire")
    db.session.commit()
    post_form(client, "/compte/mot-de-passe-oublie", {"email": "claire@example.org"})
    assert deliver_pending() == 1
    assert deliver_pending() == 0  # sent once, not again
    [message] = inbox.messages
    assert message["To"] == "claire@example.org"
    assert message["Subject"] == "Panier commun : choisir un nouveau mot de passe"
    assert "Le lien marche une seule fois" in message.get_content()

    path = _link(message)
    post_form(client, path, {"password": "mon-nouveau-secret", "confirm": "mon-nouveau-secret"})
    assert "Bonjour Claire" in login(client, "claire@example.org", "mon-nouveau-secret").get_data(as_text=True)


def test_invitation_mail_in_the_invited_persons_language(app, client, inbox):
    UserFactory(email="coord@example.org", roles=["coordinator"])
    household = HouseholdFactory(name="Foyer Smith")
    db.session.commit()
    login(client, "coord@example.org")
    post_form(client, "/compte/utilisateurs", {
        "name": "John Smith", "email": "john@example.org", "roles": ["member"],
        "household_id": str(household.id), "producer_id": "0", "locale": "en"})
    assert deliver_pending() == 1
    [message] = inbox.messages
    assert message["Subject"] == "Welcome to Panier commun"
    assert "Hello John Smith" in message.get_content()
    assert _link(message).startswith("/compte/bienvenue/")


def test_starttls_checks_the_servers_certificate(app, tmp_path):
    """With MAIL_USE_TLS, a server whose certificate no authority signed is not trusted: nothing is sent to it
    (smtplib alone would have encrypted to anybody, and a reset link is a password)."""
    import shutil
    import ssl
    import subprocess

    from app.models import OutboxMessage

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True)
    controller.start()
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=port, MAIL_TRANSPORT="smtp", MAIL_USE_TLS=True)
    try:
        UserFactory(email="claire@example.org", name="Claire")
        db.session.commit()
        from app.auth.services import request_password_reset

        assert request_password_reset("claire@example.org", lambda token: f"http://localhost/{token}")
        db.session.commit()
        assert deliver_pending() == 0
        assert handler.messages == []
        message = db.session.scalars(sa.select(OutboxMessage)).one()
        assert message.sent_at is None and "CERTIFICATE_VERIFY_FAILED" in (message.last_error or "")
    finally:
        controller.stop()
