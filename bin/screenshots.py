"""Phone-sized screenshots of the main pages of a running demo, saved under docs/screenshots/."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")

#: (file name, demo account, endpoint)
PAGES = [
    ("login", None, "auth.login"),
    ("cart", "claire.martin@example.org", "orders.cart"),
    ("catalogue", "primeurs.rossi@example.org", "producers.catalogue"),
    ("producer-demand", "primeurs.rossi@example.org", "producers.demand"),
    ("preparation", "benevole@example.org", "pickup.prepare"),
    ("desk", "benevole@example.org", "pickup.desk"),
    ("coordinator-cycle", "coordination@example.org", "orders.cycles"),
    ("places-rhythms", "coordination@example.org", "orders.schedules"),
    ("accounts", "coordination@example.org", "auth.users"),
]


def paths() -> dict[str, str]:
    """URL path of each endpoint, read from the app's own routes."""
    os.environ.setdefault("SECRET_KEY", "screenshots-only")
    from flask import url_for

    from app import create_app

    app = create_app("development")
    found = {}
    with app.test_request_context():
        for _, _, endpoint in PAGES:
            if endpoint in app.view_functions:
                found[endpoint] = url_for(endpoint)
    return found


def main(base: str) -> int:
    """Sign in as each demo account and save the pages that exist."""
    from playwright.sync_api import sync_playwright

    from app.demo import DEMO_PASSWORD

    urls = paths()
    OUT.mkdir(parents=True, exist_ok=True)
    saved = 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        for name, email, endpoint in PAGES:
            if endpoint not in urls:
                print(f"skip {name}: no {endpoint} page")
                continue
            context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                          locale="fr-FR")
            page = context.new_page()
            if email:
                page.goto(base + urls["auth.login"])
                page.get_by_label("Adresse e-mail").fill(email)
                page.get_by_label("Mot de passe").fill(DEMO_PASSWORD)
                page.get_by_role("button", name="Se connecter").click()
                page.wait_for_load_state()
            response = page.goto(base + urls[endpoint])
            if response is None or response.status >= 400:
                print(f"skip {name}: {base + urls[endpoint]} answered {response.status if response else '?'}")
            else:
                page.screenshot(path=str(OUT / f"{name}.png"), full_page=False)
                print(f"saved docs/screenshots/{name}.png")
                saved += 1
            context.close()
        browser.close()
    return 0 if saved else 1


if __name__ == "__main__":
    sys.exit(main((sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000").rstrip("/")))
