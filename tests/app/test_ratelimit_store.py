"""Sign-in limits are shared by the web processes and count failed attempts only (app.ratelimit_store)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.extensions import db
from app.ratelimit_store import SQLiteStorage
from tests.factories import UserFactory
from tests.helpers import PASSWORD, csrf_token

ROOT = Path(__file__).resolve().parents[2]


def test_counters_are_shared_by_two_stores_on_one_file_and_end_with_their_window(tmp_path):
    uri = f"sqlite:///{tmp_path / 'ratelimit.db'}"
    first, second = SQLiteStorage(uri), SQLiteStorage(uri)  # as two web processes would have
    assert first.incr("login:198.51.100.7", 60) == 1
    assert second.incr("login:198.51.100.7", 60) == 2
    assert first.incr("login:198.51.100.7", 60, amount=3) == 5
    assert second.get("login:198.51.100.7") == 5 and second.get("login:someone-else") == 0
    assert time.time() + 55 < first.get_expiry("login:198.51.100.7") <= time.time() + 60
    second.clear("login:198.51.100.7")
    assert first.get("login:198.51.100.7") == 0
    assert first.incr("short", 0.2) == 1
    time.sleep(0.3)
    assert second.get("short") == 0 and second.incr("short", 60) == 1  # a new window
    assert first.check() and first.reset() == 1 and second.get("short") == 0


def test_a_file_is_given_as_sqlalchemy_does():
    assert SQLiteStorage("sqlite:////srv/panier/ratelimit.db").path == "/srv/panier/ratelimit.db"
    assert SQLiteStorage("sqlite:///instance/ratelimit.db").path == "instance/ratelimit.db"
    with pytest.raises(ValueError):
        SQLiteStorage("sqlite://")


_ATTEMPTS = """
import json, os, re, sys
from app import create_app
from config import TestConfig
app = create_app(TestConfig, SQLALCHEMY_DATABASE_URI=os.environ["DB"], INSTANCE_DIR=os.environ["INSTANCE"],
                 RATELIMIT_STORAGE_URI=os.environ["LIMITS"])
client = app.test_client()
page = client.get("/compte/connexion").get_data(as_text=True)
token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
print(json.dumps([client.post("/compte/connexion", data={
    "email": "claire@example.org", "password": f"essai-{n}", "csrf_token": token},
    environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code for n in range(int(sys.argv[1]))]))
"""


def test_two_web_processes_share_one_limit(app, tmp_path):
    """Before, each gunicorn worker counted on its own: two workers let twenty guesses through."""
    UserFactory(email="claire@example.org")
    db.session.commit()
    env = dict(os.environ, DB=app.config["SQLALCHEMY_DATABASE_URI"], INSTANCE=str(tmp_path),
               LIMITS=f"sqlite:///{tmp_path / 'ratelimit.db'}", PYTHONPATH=str(ROOT))
    if env["DB"] == "sqlite://":
        pytest.skip("an in-memory database is not shared with other processes")
    limit = int(app.config["LOGIN_RATE_LIMIT"].split()[0])

    def process(attempts: int) -> list[int]:
        done = subprocess.run([sys.executable, "-c", _ATTEMPTS, str(attempts)], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    assert process(limit - 4) == [200] * (limit - 4)
    assert process(5) == [200, 200, 200, 200, 429]


def test_only_failed_sign_ins_count(app, client):
    """A café's members signing in from its one address do not lock it out; guessing still does."""
    UserFactory(email="claire@example.org")
    db.session.commit()
    limit = int(app.config["LOGIN_RATE_LIMIT"].split()[0])
    token = csrf_token(client.get("/compte/connexion").data)
    cafe = {"REMOTE_ADDR": "198.51.100.30"}
    for _ in range(limit + 2):
        signed_in = client.post("/compte/connexion", data={
            "email": "claire@example.org", "password": PASSWORD, "csrf_token": token}, environ_base=cafe)
        assert signed_in.status_code == 302
        client.post("/compte/deconnexion", data={"csrf_token": token}, environ_base=cafe)
        client.delete_cookie("session")
        token = csrf_token(client.get("/compte/connexion", environ_base=cafe).data)
    statuses = [client.post("/compte/connexion", data={
        "email": "claire@example.org", "password": f"essai-{n}", "csrf_token": token}, environ_base=cafe).status_code
        for n in range(limit + 1)]
    assert statuses == [200] * limit + [429]
