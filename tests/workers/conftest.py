"""Fixtures for worker tests: a real SMTP server (aiosmtpd) on a free loopback port."""
from __future__ import annotations

import email
import email.policy
import threading

import pytest
from aiosmtpd.controller import Controller

from tests.servers import free_port


class RecordingHandler:
    """Keeps every accepted message; can be told to refuse with a 5xx or 4xx reply."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.refuse: str | None = None
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        """Accept (and record) or refuse the message."""
        if self.refuse:
            return self.refuse
        parsed = email.message_from_bytes(envelope.original_content or envelope.content,
                                          policy=email.policy.default)
        with self.lock:
            self.messages.append(parsed)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list:
        """Messages received for one address."""
        return [m for m in self.messages if m["To"] == address]


@pytest.fixture()
def smtp_server(app):
    """A running aiosmtpd server; the app is configured to send through it."""
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    app.config.update({"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": port, "MAIL_TRANSPORT": "smtp",
                       "MAIL_TIMEOUT": 5})
    handler.port = port
    try:
        yield handler
    finally:
        controller.stop()
