"""Fixtures of the app tests: a real SMTP server (aiosmtpd) the app sends through."""
from __future__ import annotations

import email
import email.policy

import pytest
from aiosmtpd.controller import Controller

from tests.servers import free_port


class Inbox:
    """Every message the SMTP server accepted."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        """Record and accept."""
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@pytest.fixture()
def inbox(app):
    """An aiosmtpd server on a free loopback port; the app sends through it."""
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=port, MAIL_TRANSPORT="smtp", MAIL_USE_TLS=False)
    try:
        yield handler
    finally:
        controller.stop()
