"""HTTP benchmark: gunicorn on loopback loaded by wrk; a one-row insert versus saving a 10-line order.

    python -m bench.http [--database sqlite|postgresql] [--duration 5] [--rounds 7] [--small]

The scenario (10,000 households, 50 producers, 500 products by default) is generated first; then
wrk measures, in the same run, (a) POST /bench/insert, a Flask endpoint that inserts one row, and
(b) POST /commandes/panier, a signed-in member saving a 10-line order with its CSRF token, one
session per wrk connection. After a warm-up, each round measures (b) between two runs of (a) and
compares it with their mean. The last line is ``ratio=<b/a> order_rps=<b> insert_rps=<a>`` for the
round with the median ratio. Each round also prints the CPU time gunicorn's processes spent per
request (Linux) and its insert/order ratio: on a shared machine a slow round is slow there too, so the
noise is in the CPU's speed, not in waiting.
"""
from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import NamedTuple

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
USER_AGENT = "panier-bench/1"
BENCH_METADATA = sa.MetaData()
#: The table the insert endpoint writes one row to per request (created only in bench databases).
bench_hit = sa.Table(
    "bench_hit", BENCH_METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("note", sa.String(40), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def bench_app():
    """Gunicorn entry point: the normal app, plus the bench blueprint when BENCH_ENDPOINTS=1."""
    from flask import Blueprint

    from app import create_app
    from app.db import utcnow
    from app.extensions import csrf, db

    app = create_app()
    if os.environ.get("BENCH_ENDPOINTS") == "1":
        bp = Blueprint("bench", __name__)

        @bp.route("/bench/insert", methods=["POST"])
        @csrf.exempt
        def insert_one():
            """Insert one row and commit: the baseline of a write request."""
            db.session.execute(bench_hit.insert().values(note="hit", created_at=utcnow()))
            db.session.commit()
            return "ok\n"

        app.register_blueprint(bp)
    return app


LUA = r"""
-- Each wrk thread has one connection and its own signed-in session (cookie + CSRF token).
local sessions = %(sessions)s
local counter = 0
local threads = {}

function setup(thread)
  counter = counter + 1
  thread:set("index", counter)
  table.insert(threads, thread)
end

function init(args)
  session = sessions[((index - 1) %% #sessions) + 1]
  turn = 0
  bad = 0
end

function request()
  turn = turn + 1
  local body = session.bodies[(turn %% #session.bodies) + 1]
  return wrk.format("POST", "%(path)s", {
    ["Cookie"] = session.cookie,
    ["User-Agent"] = "%(agent)s",
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }, body)
end

function response(status, headers, body)
  if status ~= %(expected)d then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do
    total = total + (t:get("bad") or 0)
  end
  io.write(string.format("unexpected_status=%%d\n", total))
end
"""


def _lua_value(value) -> str:
    """A Python value as Lua source."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{json.dumps(k)}] = {_lua_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "{" + ", ".join(_lua_value(v) for v in value) + "}"
    return json.dumps(value)


def _opener() -> tuple[urllib.request.OpenerDirector, http.cookiejar.CookieJar]:
    """A urllib opener that keeps cookies and does not follow redirects."""
    jar = http.cookiejar.CookieJar()

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    opener.addheaders = [("User-Agent", USER_AGENT)]
    return opener, jar


def _fetch(opener, url: str, data: dict | None = None) -> tuple[int, str]:
    """GET or POST a form; the status and body (redirects are not followed)."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with opener.open(url, body, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _token(html: str) -> str:
    """The CSRF token of a page."""
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    if not match:
        raise RuntimeError("no CSRF token in the page")
    return match.group(1)


def member_session(base: str, email: str, password: str, rng: random.Random, lines: int = 10) -> dict:
    """Sign a member in; return its cookie and two 10-line cart bodies that alternate quantities."""
    opener, jar = _opener()
    _, page = _fetch(opener, base + "/compte/connexion")
    status, _ = _fetch(opener, base + "/compte/connexion",
                       {"email": email, "password": password, "csrf_token": _token(page)})
    if status != 302:
        raise RuntimeError(f"sign-in of {email} failed ({status})")
    status, cart = _fetch(opener, base + "/commandes/panier")
    if status != 200:
        raise RuntimeError(f"cart page failed ({status})")
    token = _token(cart)
    cycle_id = re.search(r'name="cycle_id" type="hidden" value="(\d+)"', cart).group(1)
    slot_id = re.search(r'<option value="(\d+)"', cart).group(1)
    prices = dict(re.findall(r'name="p-(\d+)" value="(\d+)"', cart))
    chosen = rng.sample(sorted(prices), lines)
    bodies = []
    for factor in (1, 2):
        form = {"csrf_token": token, "cycle_id": cycle_id, "slot_id": slot_id}
        for offer_id in chosen:
            # Whole numbers are multiples of every portion step the scenario uses (1 or 0,5).
            form[f"q-{offer_id}"] = str(factor * (1 + int(offer_id) % 3))
            form[f"p-{offer_id}"] = prices[offer_id]
        bodies.append(urllib.parse.urlencode(form))
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
    # Check once that the body saves, before wrk repeats it.
    request = urllib.request.Request(base + "/commandes/panier", data=bodies[0].encode(),
                                     headers={"Cookie": cookie, "User-Agent": USER_AGENT,
                                              "Content-Type": "application/x-www-form-urlencoded"})
    bare, _ = _opener()
    try:
        with bare.open(request, timeout=30) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
        detail = error.read().decode()
        if status != 302:
            raise RuntimeError(f"order not saved ({status}): {re.findall(r'<li>(.*?)</li>', detail)[:3]}") from None
    if status != 302:
        raise RuntimeError(f"order not saved ({status})")
    return {"cookie": cookie, "bodies": bodies}


class Measure(NamedTuple):
    """One wrk run: throughput, unexpected statuses, and the server's CPU per request."""

    rps: float
    bad: int
    cpu_ms: float | None  # user + system CPU of gunicorn's processes per request; None off Linux


def _server_cpu_seconds(master: int) -> float | None:
    """User + system CPU used so far by gunicorn's master and its workers (Linux /proc), else None."""
    if not Path("/proc/self/stat").exists():
        return None
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(entry.name) == master or int(fields[1]) == master:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, path: str, sessions: list[dict], expected: int, duration: int, workdir: Path,
            server_pid: int) -> Measure:
    """Run wrk with one connection per thread, and read the server's CPU time around it."""
    script = workdir / f"wrk-{path.strip('/').replace('/', '-')}.lua"
    script.write_text(LUA % {"sessions": _lua_value(sessions), "path": path, "agent": USER_AGENT,
                             "expected": expected})
    connections = len(sessions)
    cpu_before = _server_cpu_seconds(server_pid)
    output = subprocess.run(
        ["wrk", "-t", str(connections), "-c", str(connections), "-d", f"{duration}s", "--timeout", "10s",
         "-s", str(script), url + path],
        capture_output=True, text=True, check=True,
    ).stdout
    cpu_after = _server_cpu_seconds(server_pid)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    bad = int(re.search(r"unexpected_status=(\d+)", output).group(1))
    print(output.strip())
    cpu_ms = None
    if cpu_before is not None and cpu_after is not None and requests:
        cpu_ms = (cpu_after - cpu_before) * 1000 / requests
    return Measure(rps, bad, cpu_ms)


def _wait_http(url: str, timeout: float = 60) -> None:
    """Wait until the server answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer")


def main(argv: list[str] | None = None) -> None:
    """Generate the scenario, start gunicorn and wrk, print both throughputs and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=7,
                        help="orders measured between two inserts; the round with the median ratio is reported")
    parser.add_argument("--households", type=int, default=10000)
    parser.add_argument("--producers", type=int, default=50)
    parser.add_argument("--products", type=int, default=500)
    parser.add_argument("--small", action="store_true", help="1,000 households, 20 producers, 100 products")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if args.small:
        args.households, args.producers, args.products = 1000, 20, 100

    sys.path.insert(0, str(ROOT))
    from tests.servers import PostgresCluster, free_port

    workdir = Path(tempfile.mkdtemp(prefix="panier-bench-"))
    cluster = None
    server = None
    try:
        if args.database == "postgresql":
            cluster = PostgresCluster().start()
            url = cluster.create_database("panier_bench")
        else:
            url = f"sqlite:///{workdir / 'bench.db'}"
        env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "bench-secret-not-for-production",
               "PANIER_CONFIG": "development", "SESSION_COOKIE_SECURE": "0", "PANIER_INSTANCE": str(workdir),
               "BENCH_ENDPOINTS": "1", "LOGIN_RATE_LIMIT": "100000 per minute", "MAIL_TRANSPORT": "file",
               "PYTHONPATH": str(ROOT)}
        ids = _prepare(url, workdir, args)
        port = free_port()
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "--no-control-socket", "-w", str(args.workers),
             "-b", f"127.0.0.1:{port}", "--log-level", "warning", "bench.http:bench_app()"],
            cwd=ROOT, env=env, start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        _wait_http(base + "/compte/connexion")
        rng = random.Random(7)
        sessions = [member_session(base, ids["member_emails"][i * 37 % len(ids["member_emails"])],
                                   ids["password"], rng) for i in range(args.connections)]
        print(f"# {args.database}: {args.households} households, {args.products} offers, "
              f"{args.connections} connections, {args.workers} gunicorn workers")
        # Warm up both endpoints (imports, statement caches, prepared statements) before measuring.
        inserts = [{"cookie": "", "bodies": [""]}] * args.connections
        run_wrk(base, "/bench/insert", inserts, 200, 2, workdir, server.pid)
        run_wrk(base, "/commandes/panier", sessions, 302, 2, workdir, server.pid)
        # Each round measures the insert, the order and the insert again: on a shared machine the
        # speed drifts from one second to the next, and the order is compared with the mean of the two
        # inserts around it, which cancels a steady drift. The round with the median ratio is reported.
        rounds, cpu_ratios = [], []
        before = run_wrk(base, "/bench/insert", inserts, 200, args.duration, workdir, server.pid)
        for _ in range(args.rounds):
            order = run_wrk(base, "/commandes/panier", sessions, 302, args.duration, workdir, server.pid)
            after = run_wrk(base, "/bench/insert", inserts, 200, args.duration, workdir, server.pid)
            around = (before.rps + after.rps) / 2
            print(f"insert: {around:.1f} requests/s, mean of {before.rps:.1f} before and {after.rps:.1f} after "
                  f"({before.bad + after.bad} unexpected statuses)")
            print(f"order (10 lines, signed in, CSRF): {order.rps:.1f} requests/s ({order.bad} unexpected statuses)")
            print(f"round: ratio={order.rps / around:.3f}")
            if None not in (before.cpu_ms, order.cpu_ms, after.cpu_ms):
                insert_cpu = (before.cpu_ms + after.cpu_ms) / 2
                cpu_ratios.append(insert_cpu / order.cpu_ms)
                print(f"server CPU per request: order {order.cpu_ms:.2f} ms, insert {insert_cpu:.2f} ms "
                      f"(cpu_ratio={cpu_ratios[-1]:.3f})")
            if before.bad or order.bad or after.bad:
                print("WARNING: some requests did not get the expected status")
            rounds.append((order.rps / around, order.rps, around))
            before = after
        ratio, order_rps, insert_rps = sorted(rounds)[len(rounds) // 2]
        if cpu_ratios:
            print(f"# server CPU per request, insert/order, median of {len(cpu_ratios)} rounds: "
                  f"{sorted(cpu_ratios)[len(cpu_ratios) // 2]:.3f}")
        print(f"# median of {len(rounds)} rounds")
        print(f"ratio={ratio:.3f} order_rps={order_rps:.1f} insert_rps={insert_rps:.1f}")
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _prepare(url: str, workdir: Path, args) -> dict:
    """Create the schema and generate the scenario in the bench database."""
    from app import create_app
    from app.extensions import db
    from bench.scenario import generate

    app = create_app("development", SQLALCHEMY_DATABASE_URI=url, SECRET_KEY="bench-secret-not-for-production",
                     INSTANCE_DIR=str(workdir))
    with app.app_context():
        db.create_all()
        BENCH_METADATA.create_all(db.engine)
        started = time.monotonic()
        ids = generate(households=args.households, producers=args.producers, products=args.products, slots=20)
        print(f"# scenario generated in {time.monotonic() - started:.1f} s")
        db.engine.dispose()
    return ids


if __name__ == "__main__":
    main()
