"""Small helpers shared by tests: sign in through the real form, read CSRF tokens."""
from __future__ import annotations

import re

PASSWORD = "motdepasse-demo-123"


def csrf_token(html: str | bytes) -> str:
    """The CSRF token of the first form of a page."""
    if isinstance(html, bytes):
        html = html.decode()
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html
    )
    assert match, "no CSRF token in page"
    return match.group(1)


def login(client, email: str, password: str = PASSWORD):
    """Sign in through the login form, CSRF token included."""
    page = client.get("/compte/connexion")
    return client.post(
        "/compte/connexion",
        data={"email": email, "password": password, "csrf_token": csrf_token(page.data)},
        follow_redirects=True,
    )


def post_form(client, url: str, data: dict, follow_redirects: bool = True, form_url: str | None = None):
    """POST a form with the CSRF token read from the page that shows it."""
    page = client.get(form_url or url)
    payload = {"csrf_token": csrf_token(page.data), **data}
    return client.post(url, data=payload, follow_redirects=follow_redirects)
