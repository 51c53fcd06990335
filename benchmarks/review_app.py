"""The review app's queue page with 10,000 open items: requests per second over real HTTP.

A SQLite operations database in a temporary directory gets `--items` open review items (bulk
inserted: the replay split's texts and intents, 10% P1 / 30% P2 / 60% P3, a fifth overdue, 5% in
the senior queue, eight reason codes) and one senior reviewer. The real `ai-assets review serve`
runs in its own process on a free loopback port (one uvicorn worker, the shipped defaults); this
process signs in like a browser (login form token, Origin header, session cookie) and then keeps
`--threads` keep-alive connections busy for `--seconds` on

  queue     GET /queue (the first page, default filter: list, total, the four filter counts)
  healthz   GET /healthz (no session, no database): the same server's baseline

ratio = queue requests/s / healthz requests/s (machine-independent: what one queue page costs
beyond the framework). Each response is checked (status 200; the queue page shows the total).
The queue page's database reads are also timed in-process (list_items + counts, no HTTP).

    python -m benchmarks.review_app [--items 10000] [--seconds 20] [--threads 4] [--out FILE]

Results: benchmarks/results/review_app.json. Nothing here asserts on time; about a minute.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from ai_assets.data.datasets import split_banking77
from ai_assets.ops_db import OpsDb
from ai_assets.ops_db.tables import ReviewItem
from ai_assets.review.accounts import ReviewerAccounts
from ai_assets.review.queue import QueueFilter, counts, list_items, visible_queues

RESULTS = Path(__file__).resolve().parent / "results" / "review_app.json"
BIN = Path(sys.executable).parent
REASONS = ["below_threshold: 0.41 < 0.70", "below_threshold: 0.55 < 0.70", "needs_human", "out_of_scope",
           "llm_local_disagree: local card_arrival", "never_automated: lost_or_stolen_card",
           "case_conflict: case 12 changed by agent.kim after the pipeline read v1; now v2",
           "label_in_text: card_arrival"]
NAME, PASSWORD = "bench.senior", "benchmark password 0123"


def seed(db: OpsDb, n: int) -> None:
    rng = random.Random(13)
    rows = split_banking77()["replay"]
    now = datetime.now(UTC)
    batch = []
    for i in range(n):
        row = rows[i % len(rows)]
        priority = rng.choices(["P1", "P2", "P3"], weights=[1, 3, 6])[0]
        created = now - timedelta(minutes=rng.uniform(0, 3 * 24 * 60))
        due = now - timedelta(hours=rng.uniform(0, 6)) if rng.random() < 0.2 else now + timedelta(
            hours=rng.uniform(0, 24))
        batch.append({
            "idempotency_key": f"bench-{i:06d}", "message_id": f"bench-{i:06d}", "customer_id": f"cust-{i % 4000:05d}",
            "reason": rng.choice(REASONS), "intent": row.category, "confidence": round(rng.uniform(0.2, 0.7), 3),
            "queue": "cards", "priority": priority, "text": row.text, "status": "open", "created_at": created,
            "suggestions": [[row.category, 0.45], ["card_arrival", 0.2], ["exchange_rate", 0.1]],
            "model_version": "intent_model v1", "due_at": due,
            "review_queue": "senior" if rng.random() < 0.05 else "standard", "version": 1})
        if len(batch) == 1000:
            with db.sessions.write() as s:
                s.execute(insert(ReviewItem), batch)
            batch = []
    if batch:
        with db.sessions.write() as s:
            s.execute(insert(ReviewItem), batch)
    ReviewerAccounts(db.sessions).add(NAME, "senior", PASSWORD)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(port: int, process: subprocess.Popen, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the review app exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the review app did not answer within {timeout_s} s")


def sign_in(port: int) -> str:
    """The session cookie, obtained as a browser does (form token, Origin, cookie)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/login")
    page = conn.getresponse()
    html = page.read().decode()
    login_cookie = page.getheader("set-cookie").split(";")[0]
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    body = urllib.parse.urlencode({"name": NAME, "password": PASSWORD, "csrf_token": token, "next": "/queue"})
    conn.request("POST", "/login", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Origin": f"http://127.0.0.1:{port}",
        "Cookie": login_cookie})
    answer = conn.getresponse()
    answer.read()
    cookies = [c.split(";")[0] for c in answer.headers.get_all("set-cookie") if c.startswith("review_session=")]
    if answer.status != 303 or not cookies:
        raise RuntimeError(f"sign-in failed: {answer.status}")
    return cookies[0]


def hammer(port: int, path: str, cookie: str | None, seconds: float, threads: int, expect: str | None) -> dict:
    """`threads` keep-alive connections requesting `path` for `seconds`; counts and latencies."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    failures = [0] * threads
    stop_at = time.perf_counter() + seconds
    headers = {"Cookie": cookie} if cookie else {}

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException):
                failures[k] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            if response.status != 200 or (expect is not None and expect.encode() not in body):
                failures[k] += 1
            latencies[k].append(time.perf_counter() - started)
        conn.close()

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    flat = sorted(x for per in latencies for x in per)
    done = len(flat)
    return {"path": path, "requests": done, "failed": sum(failures), "seconds": round(elapsed, 2),
            "requests_per_second": round(done / elapsed, 1),
            "latency_ms_p50": round(1000 * statistics.median(flat), 2) if flat else None,
            "latency_ms_p95": round(1000 * flat[int(0.95 * (done - 1))], 2) if flat else None}


def in_process_reads(db: OpsDb, repeats: int = 30) -> dict:
    f = QueueFilter(visible=visible_queues("senior"))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        list_items(db.sessions, f, 1, 50)
        counts(db.sessions, f)
        times.append(time.perf_counter() - started)
    return {"list_and_counts_ms_p50": round(1000 * statistics.median(times), 2),
            "list_and_counts_ms_min": round(1000 * min(times), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ai_assets_bench_review_") as tmp:
        root = Path(tmp)
        db_url = f"sqlite:///{root / 'ops.db'}"
        with OpsDb.open(db_url) as db:
            started = time.perf_counter()
            seed(db, args.items)
            print(f"seeded {args.items:,} open review items in {time.perf_counter() - started:.1f} s", flush=True)
            reads = in_process_reads(db)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AI_ASSETS_")}
        env.update({"AI_ASSETS_DATA_DIR": str(root / "data"), "AI_ASSETS_OPS_DB_URL": db_url,
                    "AI_ASSETS_REVIEW_SECRET_KEY": "benchmark-secret-key-0123456789"})
        log = root / "review_app.log"
        with log.open("wb") as out:
            process = subprocess.Popen([str(BIN / "ai-assets"), "review", "serve", "--port", str(port)], env=env,
                                       stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        try:
            wait_until_serving(port, process, log)
            cookie = sign_in(port)
            hammer(port, "/queue", cookie, 2.0, args.threads, None)  # warm-up
            queue = hammer(port, "/queue", cookie, args.seconds, args.threads, f"{args.items} open")
            print(f"GET /queue: {queue['requests_per_second']} requests/s, p50 {queue['latency_ms_p50']} ms, "
                  f"{queue['failed']} failed", flush=True)
            health = hammer(port, "/healthz", None, args.seconds, args.threads, '"ok"')
            print(f"GET /healthz: {health['requests_per_second']} requests/s", flush=True)
        finally:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
    results = {
        "benchmark": "review_app",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                        "load_average_1m": round(os.getloadavg()[0], 2), "database": "sqlite",
                        "server": "ai-assets review serve (one uvicorn worker)"},
        "input": {"open_items": args.items, "seconds": args.seconds, "client_threads": args.threads,
                  "page_size": 50},
        "queue_page": queue,
        "healthz": health,
        "queue_over_healthz_rps_ratio": round(queue["requests_per_second"] / health["requests_per_second"], 3)
        if health["requests_per_second"] else None,
        "in_process_reads": reads,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return 0 if queue["failed"] == 0 and health["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
