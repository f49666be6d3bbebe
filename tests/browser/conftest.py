"""Browser harness: the app served on a loopback port, Playwright driving Debian's Chromium."""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from werkzeug.serving import make_server

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


def pytest_collection_modifyitems(config, items):
    """Every test in this folder is a browser test."""
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember each phase's outcome so the page fixture can keep a screenshot of failures."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


@pytest.fixture()
def live_server(app):
    """The app served by a real HTTP server in a thread; yields its base URL."""
    app.config.update(SERVER_NAME=None, BASE_URL="")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    port = server.server_port
    app.config["BASE_URL"] = f"http://127.0.0.1:{port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def playwright_instance():
    """One Playwright driver per test process."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright_instance):
    """Debian's Chromium, headless (never a downloaded browser)."""
    browser = playwright_instance.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@pytest.fixture()
def page_factory(browser, request):
    """Make pages with their own cookies; keeps a screenshot of each when the test fails."""
    contexts = []

    def make(width: int = 390, height: int = 844, locale: str = "fr-FR"):
        context = browser.new_context(viewport={"width": width, "height": height}, locale=locale)
        context.set_default_timeout(15000)
        contexts.append(context)
        return context.new_page()

    yield make
    failed = getattr(request.node, "rep_call", None)
    for index, context in enumerate(contexts):
        if failed is not None and failed.failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for n, page in enumerate(context.pages):
                name = f"{request.node.name}-{index}-{n}.png".replace("/", "_")
                # A crashed page must not hide the real failure.
                with contextlib.suppress(PlaywrightError):
                    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
        context.close()


@pytest.fixture()
def page(page_factory):
    """A phone-sized page (390 px wide)."""
    return page_factory()


def sign_in(page, base_url: str, email: str, password: str) -> None:
    """Sign in through the login form as a person would."""
    page.goto(base_url + "/compte/connexion")
    page.get_by_label("Adresse e-mail").fill(email)
    page.get_by_label("Mot de passe").fill(password)
    page.get_by_role("button", name="Se connecter").click()
    # The click returns once the next page starts loading; wait until it is another page, fully loaded.
    page.wait_for_url(lambda url: "/compte/connexion" not in url)
