"""Close benchmark: aggregation beside a raw GROUP BY, documents with K workers beside raw WeasyPrint.

    python -m bench.close --orders 10000 --workers 2

Generates a closed cycle (bench/scenario.py) in a throw-away SQLite database (or DATABASE_URL),
times allocation and aggregation against a raw GROUP BY over the same lines, then starts K real
`celery -A workers.celery_app worker --concurrency=1` processes on the filesystem broker, lets them
render every document chunk, and compares their pages per second with WeasyPrint rendering a
plain table of the same size in this process. Ends with one line:
aggregation_ratio=<x> pdf_ratio=<y> peak_rss_mib=<z> pages=<n>

The documents' time runs from enqueueing finalize_cycle (the prepare step is done before, and
timed on its own) until every chunk step is done; the finish step (e-mails) is not in it.
The baseline is plain WeasyPrint, called as is. Read beside it:
- "like for like": raw WeasyPrint run the way app.pdf runs it (cyclic GC paused, frame stack
  with room), so the ratio shows what our templates, queries and workers cost, not what the
  interpreter settings win;
- "worker CPU time": on a machine shared with other work, wall time also counts waiting for
  a core; pages per CPU second do not.
The raw rate moves with the CPython 3.11 frame-stack issue described in app/pdf.py (by
chance of call depth), and with the machine's load: compare runs by the like-for-like line.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent

#: Largest worker RSS seen while the documents were rendered (MiB).
SAMPLED_PEAK = [0.0]

RAW_SQL = """
SELECT l.offer_id, o.slot_id, SUM(l.quantity_allocated), SUM(l.quantity)
FROM order_line l JOIN "order" o ON o.id = l.order_id
WHERE o.cycle_id = :cycle AND o.status = 'confirmed'
GROUP BY l.offer_id, o.slot_id
"""


def best_of(runs: int, function) -> float:
    """The shortest of several timings of a function (seconds)."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def raw_weasyprint_rate(rows: int, *, as_app_pdf: bool = False) -> tuple[float, int]:
    """Pages per second of WeasyPrint on a plain table of `rows` rows (one process).

    as_app_pdf renders the way app.pdf.render_pdf does (cyclic GC paused, frame stack with
    room): not the baseline of the target, printed beside it so the ratio can also be read
    like for like.
    """
    from weasyprint import HTML

    from app.pdf import call_with_stack_room, cyclic_gc_paused

    body = "".join(
        f"<tr><td>{n}</td><td>Famille {n:05d}</td><td>Produit {n % 500}</td><td>{n % 7}</td><td>12,50 €</td></tr>"
        for n in range(rows)
    )
    html = ("<html><head><style>@page { size: A4; margin: 15mm } td { border: 1px solid #000; padding: 2mm }"
            "</style></head><body><table>" + body + "</table></body></html>")
    HTML(string="<p>warm-up</p>").render().write_pdf()  # fonts and CSS machinery load once

    def render_as_app_pdf() -> int:
        with cyclic_gc_paused():
            document = HTML(string=html).render()
            document.write_pdf()
            return len(document.pages)

    started = time.perf_counter()
    if as_app_pdf:
        pages = call_with_stack_room(render_as_app_pdf)
    else:
        document = HTML(string=html).render()
        document.write_pdf()
        pages = len(document.pages)
    return pages / (time.perf_counter() - started), pages


def group_processes(pgids: set[int]):
    """(folder in /proc, fields of its stat line after the command name) of each process in these groups."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) in pgids:
                yield entry, fields
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue


def group_rss_mib(pgids: set[int]) -> float:
    """The largest current resident memory (MiB) among the processes of these process groups."""
    largest = 0.0
    for entry, _fields in group_processes(pgids):
        try:
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    largest = max(largest, int(line.split()[1]) / 1024)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return largest


def group_cpu_seconds(pgids: set[int]) -> float:
    """CPU time (user + system) used so far by these process groups, reaped children included."""
    ticks = sum(sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
                for _entry, fields in group_processes(pgids))
    return ticks / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    """A process' peak resident memory (VmHWM) in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--producers", type=int, default=50)
    parser.add_argument("--products", type=int, default=500)
    parser.add_argument("--slots", type=int, default=20)
    parser.add_argument("--lines-per-order", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=100, help="households per document chunk")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="panier-bench-close-"))
    database = os.environ.get("DATABASE_URL") or f"sqlite:///{folder / 'bench.db'}"
    env = dict(os.environ)
    env.update({
        "PANIER_CONFIG": "production", "SECRET_KEY": "bench-close-not-secret", "DATABASE_URL": database,
        "PANIER_INSTANCE": str(folder), "DOCUMENTS_DIR": str(folder / "documents"),
        "CELERY_BROKER_URL": "filesystem://", "CELERY_POLLING_INTERVAL": "0.05",
        "DOCUMENT_CHUNK_HOUSEHOLDS": str(args.chunk), "MAIL_TRANSPORT": "file",
        "PANIER_BEAT_SECONDS": "3600", "PYTHONPATH": str(ROOT),
    })
    os.environ.update({k: env[k] for k in ("PANIER_INSTANCE", "DOCUMENTS_DIR", "DOCUMENT_CHUNK_HOUSEHOLDS")})

    from app import create_app
    from app.extensions import db

    app = create_app("production", SECRET_KEY=env["SECRET_KEY"], SQLALCHEMY_DATABASE_URI=database,
                     INSTANCE_DIR=str(folder), DOCUMENTS_DIR=str(folder / "documents"),
                     CELERY_BROKER_URL="filesystem://", DOCUMENT_CHUNK_HOUSEHOLDS=args.chunk)
    workers: list[subprocess.Popen] = []
    try:
        with app.app_context():
            from bench.scenario import generate
            from orders import close
            from orders.documents import aggregate

            db.create_all()
            started = time.perf_counter()
            ids = generate(households=args.orders, orders=args.orders, producers=args.producers,
                           products=args.products, slots=args.slots, lines_per_order=args.lines_per_order,
                           cycle_status="closed")
            cycle_id = ids["cycle_id"]
            lines = db.session.scalar(sa.text(
                'SELECT COUNT(*) FROM order_line l JOIN "order" o ON o.id = l.order_id WHERE o.cycle_id = :c'),
                {"c": cycle_id})
            print(f"scenario: {args.orders} orders, {lines} lines, {args.producers} producers, "
                  f"{args.products} products, {args.slots} slots in {time.perf_counter() - started:.1f} s")

            bulk_seconds = [0.0]
            bulk = sys.modules.get("orders.bulk") or __import__("orders.bulk", fromlist=["allocate_bulk"])
            real_allocate_bulk = bulk.allocate_bulk

            def timed_allocate_bulk(*a, **kw):
                """orders.bulk.allocate_bulk, timed on its own."""
                started = time.perf_counter()
                try:
                    return real_allocate_bulk(*a, **kw)
                finally:
                    bulk_seconds[0] += time.perf_counter() - started

            def allocate():
                close.allocate_lines(cycle_id)
                db.session.commit()

            bulk.allocate_bulk = timed_allocate_bulk
            try:
                allocation = best_of(1, allocate)
            finally:
                bulk.allocate_bulk = real_allocate_bulk
            aggregation = best_of(3, lambda: aggregate(cycle_id))
            raw = best_of(3, lambda: db.session.execute(sa.text(RAW_SQL), {"cycle": cycle_id}).all())
            db.session.rollback()
            print(f"allocation: {allocation * 1000:.0f} ms, of which orders.bulk.allocate_bulk "
                  f"{bulk_seconds[0] * 1000:.0f} ms and normal lines (stock caps, withdrawn products) "
                  f"{(allocation - bulk_seconds[0]) * 1000:.0f} ms")
            print(f"aggregation (per producer, product and slot): {aggregation * 1000:.1f} ms; "
                  f"raw GROUP BY over the same lines: {raw * 1000:.1f} ms")
            print(f"allocation + aggregation over raw: {(allocation + aggregation) / raw:.1f}x; "
                  f"without allocate_bulk: {(allocation - bulk_seconds[0] + aggregation) / raw:.1f}x")
            prepare = best_of(1, lambda: close.prepare_cycle(cycle_id))
            print(f"prepare step (allocation, bag numbers, totals, ledger, balance payments): {prepare:.1f} s")

            # Raw WeasyPrint in this process, on a plain table as long as a bag-slip chunk.
            raw_rate, raw_pages = raw_weasyprint_rate(rows=max(args.chunk * 8, 800))
            print(f"raw WeasyPrint (plain table, one process): {raw_pages} pages at {raw_rate:.1f} pages/s")
            paused_rate, _pages = raw_weasyprint_rate(rows=max(args.chunk * 8, 800), as_app_pdf=True)
            print(f"raw WeasyPrint run as app.pdf runs it, GC paused and stack room (not the target's baseline): "
                  f"{paused_rate:.1f} pages/s")

            for n in range(args.workers):
                log = open(folder / f"worker-{n}.log", "wb")  # noqa: SIM115 - closed after the run
                workers.append(subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--pool=prefork", "--concurrency=1",
                     "--loglevel=INFO", "-n", f"bench{n}@%h", "--without-mingle", "--without-gossip",
                     "--without-heartbeat"],
                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            _wait_ready(folder, args.workers)
            groups = {w.pid for w in workers}
            cpu_before = group_cpu_seconds(groups)
            started = time.perf_counter()
            close.enqueue("finalize_cycle", cycle_id)
            reader = sa.create_engine(database)  # see _wait_chunks: reads that do not queue behind the finish step
            total = _wait_chunks(cycle_id, workers, reader)
            elapsed = time.perf_counter() - started
            cpu = group_cpu_seconds(groups) - cpu_before
            from app.models import Document

            with reader.connect() as connection:
                pages = connection.scalar(
                    sa.select(sa.func.sum(Document.pages)).where(Document.cycle_id == cycle_id))
            reader.dispose()
            rate = pages / elapsed
            print(f"documents: {total} chunks, {pages} pages in {elapsed:.1f} s with {args.workers} worker(s): "
                  f"{rate:.1f} pages/s ({rate / args.workers:.1f} per worker)")
            # The machine may be shared: CPU seconds tell the documents' cost apart from waiting for a core.
            print(f"worker CPU time: {cpu:.1f} s for {elapsed * args.workers:.1f} s of worker wall time, "
                  f"{pages / cpu:.1f} pages per CPU second")
            peak = max(SAMPLED_PEAK[0], *(peak_rss_mib(w.pid) for w in workers))
            print(f"peak RSS of a worker process (pool parent or child, sampled every 0.1 s): {peak:.0f} MiB")
            pdf_ratio = rate / raw_rate
            print(f"pdf_ratio per worker process: {pdf_ratio / args.workers:.2f} "
                  f"(like for like, against raw run as app.pdf runs it: {rate / paused_rate / args.workers:.2f})")
            print(f"aggregation_ratio={aggregation / raw:.2f} pdf_ratio={pdf_ratio:.2f} "
                  f"peak_rss_mib={peak:.0f} pages={pages}")
    finally:
        for worker in workers:
            try:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(worker.pid, signal.SIGKILL)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"kept {folder}")


def _wait_ready(folder: Path, count: int, timeout: float = 120) -> None:
    """Wait until every worker logged that it is ready (the app and WeasyPrint are imported)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = sum("ready" in (folder / f"worker-{n}.log").read_text(errors="replace") for n in range(count))
        if ready == count:
            return
        time.sleep(0.2)
    # With --loglevel=WARNING the banner may not say "ready": give them a moment and go on.
    time.sleep(2)


def _wait_chunks(cycle_id: int, workers: list, reader: sa.engine.Engine, timeout: float = 7200) -> int:
    """Wait until every document chunk of the cycle is done; returns how many there were.

    Reads through a plain engine (reader): the app's SQLite engine begins every transaction
    with BEGIN IMMEDIATE, so its reads would queue behind the finish step (which writes the
    e-mails in one transaction right after the last chunk, tens of seconds at 10,000 orders),
    count that step as document time, or give up after the busy timeout. A plain read in WAL
    mode does not wait for a writer.
    """
    from app.models import FinalizeStep

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with reader.connect() as connection:
            done, total = connection.execute(
                sa.select(sa.func.sum(sa.case((FinalizeStep.status == "done", 1), else_=0)), sa.func.count())
                .where(FinalizeStep.cycle_id == cycle_id, FinalizeStep.name.like("chunk:%"))
            ).one()
        if total and done == total:
            return total
        SAMPLED_PEAK[0] = max(SAMPLED_PEAK[0], group_rss_mib({w.pid for w in workers}))
        if any(w.poll() is not None for w in workers):
            raise RuntimeError("a worker died; see its log (--keep)")
        time.sleep(0.1)
    raise TimeoutError("documents not finished in time")


if __name__ == "__main__":
    main()
