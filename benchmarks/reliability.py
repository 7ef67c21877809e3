"""The service under load, faults, big uploads and fuzzing, against real `fitaas serve`
processes on loopback (issues 13 and 30), in one run:

    python benchmarks/reliability.py                      # everything, about 9 minutes
    python benchmarks/reliability.py --only load,upload   # some parts
    python benchmarks/reliability.py --fuzz-examples 200  # a longer fuzzing run

Parts:

- load: 50 clients polling job status every 2 s (as the web page does) while 5 jobs run,
  each client fetching the CLs picture whenever its job moved; p50/p99/max latency of status
  calls and of plot.png, errors.
- upload: a generated 30 MB workspace uploaded while a client asks ``/me`` 10 times a second
  and 40 clients poll a job's status every second: their latency during the upload.
- limits: issue 30's requests as its probe sent them (a grid of 10^9 values, 10^18 toys,
  forged ``X-Forwarded-For``, 100,000-digit numbers, negative yields, inputs that used to
  fail later, a byte-a-second client, 1,000 idle connections, formulas in CSV cells) and
  one user's one-point job while another's long job runs: each answer against its target.
- faults: a worker SIGKILLed, the server SIGKILLed and restarted, the disk full, the database
  file removed, two servers on one database: every job ends done / failed (with a reason) /
  cancelled; results lost and computed twice; status codes seen meanwhile.
- fuzz: schemathesis from the service's OpenAPI schema, positive and negative cases, with
  every check schemathesis has.

Prints one table per part, each line with the target it is held to.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from fitaas.inputs.example import write_example
from fitaas.output.results import csv_cell
from fitaas.service import db
from fitaas.service.accounts import add_user

# the `fitaas serve` process, clients and fuzzing of the tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from service_process import Service as Server
from service_process import client, fill, fuzz, stored_created

PLAIN = {"fast": False}  # jobs that take a while: pyhf's own fits


@contextlib.contextmanager
def serving(
    database: str, folder: Path, workers: int = 2, options: tuple[str, ...] = ()
) -> Iterator[Server]:
    server = Server(database, folder, workers=workers, options=options).start()
    try:
        yield server
    finally:
        server.stop()


class Setup:
    """A scratch folder with the demo pallet, a database and a user."""

    def __init__(self, root: Path, name: str, database: str | None = None) -> None:
        self.folder = root / name
        self.folder.mkdir(parents=True)
        self.database = database or f"sqlite:///{self.folder / 'service.sqlite'}"
        engine = db.connect(self.database)
        self.token = add_user(engine, "alice", ("atlas",))
        engine.dispose()
        self.workspace, self.patchset = write_example(root / "demo", overwrite=True)

    def submit(self, http: httpx.Client, **extra: Any) -> dict[str, Any]:
        workspace = http.post("/workspaces", content=self.workspace.read_bytes()).json()
        patchset = http.post("/patchsets", content=self.patchset.read_bytes()).json()
        body = {"workspace": workspace["digest"], "patchset": patchset["digest"]} | extra
        answer = http.post("/jobs", json=body)
        answer.raise_for_status()
        return dict(answer.json())

    def results(self) -> tuple[int, int]:
        """Rows in the results table, and distinct keys among them."""
        engine = db.connect(self.database)
        with engine.connect() as conn:
            rows = conn.execute(sa.select(sa.func.count()).select_from(db.results)).scalar()
            keys = conn.execute(sa.select(sa.func.count(sa.distinct(db.results.c.key)))).scalar()
        engine.dispose()
        return int(rows or 0), int(keys or 0)


def wait(http: httpx.Client, job_id: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            job = http.get(f"/jobs/{job_id}").json()
            if job.get("state") in ("done", "failed", "cancelled"):
                return dict(job)
        time.sleep(0.3)
    raise RuntimeError(f"job {job_id} not finished after {timeout} s")


def wait_done(http: httpx.Client, job_id: str, count: int) -> None:
    deadline = time.monotonic() + 120
    while http.get(f"/jobs/{job_id}").json()["done"] < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} did not reach {count} points")
        time.sleep(0.1)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n## {title}\n")
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _verdict(ok: bool) -> str:
    return "held" if ok else "MISSED"


# ---------------------------------------------------------------------------- load


def part_load(root: Path, seconds: float, clients: int) -> None:
    setup = Setup(root, "load")
    status: list[float] = []
    plots: list[float] = []
    first_plots: list[float] = []  # a client's first picture of its job
    errors: list[str] = []
    stop = threading.Event()
    with serving(setup.database, setup.folder) as server, client(server, setup.token) as http:
        jobs = [setup.submit(http, options=PLAIN)["id"] for _ in range(5)]

        def poll(n: int) -> None:
            job_id = jobs[n % len(jobs)]
            shown = -1
            with client(server, setup.token) as mine:
                time.sleep(random.random() * 2)
                while not stop.is_set():
                    start = time.perf_counter()
                    try:
                        answer = mine.get(f"/jobs/{job_id}")
                        status.append(time.perf_counter() - start)
                        if answer.status_code != 200:
                            errors.append(f"status {answer.status_code}")
                        done = answer.json().get("done", 0)
                        if done != shown and done >= 3:
                            start = time.perf_counter()
                            picture = mine.get(f"/jobs/{job_id}/plot.png")
                            (plots if shown >= 0 else first_plots).append(
                                time.perf_counter() - start
                            )
                            if picture.status_code not in (200, 409):
                                errors.append(f"plot {picture.status_code}")
                            shown = done
                    except httpx.HTTPError as exc:
                        errors.append(type(exc).__name__)
                    stop.wait(2.0)

        threads = [threading.Thread(target=poll, args=(n,)) for n in range(clients)]
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join()
        states = [http.get(f"/jobs/{j}").json() for j in jobs]
        tracebacks = server.tracebacks()
    moved = sum(s["done"] for s in states)
    _table(
        f"load: {clients} clients polling every 2 s for {seconds:.0f} s while 5 jobs run "
        f"({moved} points finished meanwhile)",
        ["requests", "count", "p50 ms", "p99 ms", "max ms", "target", "verdict"],
        [
            [
                "job status",
                len(status),
                f"{_pct(status, 0.5) * 1e3:.0f}",
                f"{_pct(status, 0.99) * 1e3:.0f}",
                f"{max(status, default=0) * 1e3:.0f}",
                "p99 < 500 ms",
                _verdict(_pct(status, 0.99) < 0.5),
            ],
            [
                "plot.png (all)",
                len(plots + first_plots),
                f"{_pct(plots + first_plots, 0.5) * 1e3:.0f}",
                f"{_pct(plots + first_plots, 0.99) * 1e3:.0f}",
                f"{max(plots + first_plots, default=0) * 1e3:.0f}",
                "p99 < 2 s",
                _verdict(_pct(plots + first_plots, 0.99) < 2.0),
            ],
            [
                "  a client's first of its job",
                len(first_plots),
                f"{_pct(first_plots, 0.5) * 1e3:.0f}",
                f"{_pct(first_plots, 0.99) * 1e3:.0f}",
                f"{max(first_plots, default=0) * 1e3:.0f}",
                "",
                "",
            ],
            [
                "  the later ones",
                len(plots),
                f"{_pct(plots, 0.5) * 1e3:.0f}",
                f"{_pct(plots, 0.99) * 1e3:.0f}",
                f"{max(plots, default=0) * 1e3:.0f}",
                "",
                "",
            ],
            ["errors", len(errors), "", "", "", "0", _verdict(not errors)],
            ["tracebacks in the log", tracebacks, "", "", "", "0", _verdict(tracebacks == 0)],
        ],
    )


# -------------------------------------------------------------------------- upload


def big_workspace(megabytes: float) -> bytes:
    """A valid workspace of about this size: channels of many bins, two samples each."""
    rng = random.Random(1)
    bins = 20_000
    channels = max(1, round(megabytes * 1e6 / (bins * 4 * 6.4)))

    def values(scale: float) -> list[float]:
        return [round(scale * (1 + rng.random()), 3) for _ in range(bins)]

    spec: dict[str, Any] = {
        "channels": [],
        "observations": [],
        "measurements": [],
        "version": "1.0.0",
    }
    for c in range(channels):
        background = values(50.0)
        spec["channels"].append(
            {
                "name": f"SR{c}",
                "samples": [
                    {
                        "name": "background",
                        "data": background,
                        "modifiers": [
                            {
                                "name": "staterror_SR",
                                "type": "staterror",
                                "data": [round(0.1 * b, 3) for b in background],
                            },
                            {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
                        ],
                    },
                    {
                        "name": "signal",
                        "data": values(1.0),
                        "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
                    },
                ],
            }
        )
        spec["observations"].append({"name": f"SR{c}", "data": [round(b) for b in background]})
    spec["measurements"] = [{"name": "meas", "config": {"poi": "mu", "parameters": []}}]
    return json.dumps(spec).encode()


def part_upload(root: Path, megabytes: float, pollers: int) -> None:
    setup = Setup(root, "upload")
    body = big_workspace(megabytes)
    latencies: list[float] = []
    stop = threading.Event()
    with serving(setup.database, setup.folder) as server, client(server, setup.token) as http:
        job = setup.submit(http, patches=["demo_700_0"])

        def ask(route: str, every: float) -> None:
            with client(server, setup.token) as other:
                while not stop.is_set():
                    start = time.perf_counter()
                    other.get(route).raise_for_status()
                    latencies.append(time.perf_counter() - start)
                    stop.wait(every)

        threads = [threading.Thread(target=ask, args=("/me", 0.1))] + [
            threading.Thread(target=ask, args=(f"/jobs/{job['id']}", 1.0)) for _ in range(pollers)
        ]
        for thread in threads:
            thread.start()
        time.sleep(2)
        before = len(latencies)
        start = time.perf_counter()
        answer = http.post("/workspaces", content=body, timeout=600)
        took = time.perf_counter() - start
        during = latencies[before:]
        stop.set()
        for thread in threads:
            thread.join()
    _table(
        f"upload: a {len(body) / 1e6:.1f} MB workspace ({answer.status_code} in {took:.1f} s) "
        f"while one client asks /me 10 times a second and {pollers} poll a job's status each "
        "second",
        [
            "cheap routes during the upload",
            "count",
            "p50 ms",
            "p99 ms",
            "max ms",
            "target",
            "verdict",
        ],
        [
            [
                "latency",
                len(during),
                f"{_pct(during, 0.5) * 1e3:.0f}",
                f"{_pct(during, 0.99) * 1e3:.0f}",
                f"{max(during, default=0) * 1e3:.0f}",
                "p99 < 500 ms",
                _verdict(_pct(during, 0.99) < 0.5),
            ],
        ],
    )


# -------------------------------------------------------------------------- faults


class Watch:
    """Polls a job's status in the background: the status codes seen while a fault happens."""

    def __init__(self, url: str, token: str, job_id: str) -> None:
        self.codes: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, token, job_id))
        self._thread.start()

    def _run(self, url: str, token: str, job_id: str) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
            while not self._stop.is_set():
                try:
                    code = str(http.get(f"{url}/api/v1/jobs/{job_id}").status_code)
                except httpx.HTTPError:
                    code = "no answer"
                self.codes[code] = self.codes.get(code, 0) + 1
                self._stop.wait(0.2)

    def close(self) -> str:
        self._stop.set()
        self._thread.join()
        return ", ".join(f"{k}: {v}" for k, v in sorted(self.codes.items()))


class Fault:
    """A job under a fault, from the moment it starts: what was stored before, the status
    codes a client sees meanwhile (through ``url``, from when :meth:`follow` is called), and
    the time until the job ends."""

    def __init__(self, setup: Setup, job: dict[str, Any], url: str | None = None) -> None:
        self.setup, self.job = setup, job
        self.before = stored_created(setup.database)
        self.start = time.perf_counter()
        self.watch: Watch | None = None
        if url is not None:
            self.follow(url)

    def follow(self, url: str) -> None:
        """Poll the job's status through this server from now on."""
        self.watch = Watch(url, self.setup.token, self.job["id"])

    def row(self, name: str, http: httpx.Client, note: Any = "") -> list[Any]:
        """Wait for the job's end; the table's line. ``note``: text, or a function of the
        job's final state that gives it (it may act first, e.g. submit the next job)."""
        job = wait(http, self.job["id"])
        text = note(job) if callable(note) else note
        codes = self.watch.close() if self.watch is not None else ""
        took = time.perf_counter() - self.start
        rows, keys = self.setup.results()
        after = stored_created(self.setup.database)
        recomputed = sum(1 for k, v in self.before.items() if after.get(k) != v)
        lost = sum(1 for k in self.before if k not in after)
        state = job["state"] + (f" ({job['error']})" if job.get("error") else "")
        ok = job["state"] in ("done", "failed", "cancelled") and not lost and rows == keys
        ok = ok and not recomputed
        return [
            name,
            state[:70],
            lost,
            rows - keys + recomputed,
            codes,
            f"{took:.1f}",
            text,
            _verdict(ok),
        ]


@contextlib.contextmanager
def job_on_one_server(setup: Setup, points: int) -> Iterator[tuple[Server, httpx.Client, Fault]]:
    """A server running a plain job that has finished ``points`` points; the fault starts."""
    with serving(setup.database, setup.folder) as server, client(server, setup.token) as http:
        job = setup.submit(http, options=PLAIN)
        wait_done(http, job["id"], points)
        yield server, http, Fault(setup, job, server.url)


def fault_worker_kill(root: Path) -> list[Any]:
    with job_on_one_server(Setup(root, "worker-kill"), 3) as (server, http, fault):
        victims = server.workers_now()
        if victims:
            victims[0].kill()
        return fault.row(
            "worker SIGKILL", http, lambda final: f"{final['done']}/{final['total']} points"
        )


def fault_server_kill(root: Path) -> list[Any]:
    setup = Setup(root, "server-kill")
    server = Server(setup.database, setup.folder).start()
    try:
        with client(server, setup.token) as http:
            job = setup.submit(http, options=PLAIN)
            wait_done(http, job["id"], 3)
        server.kill()
        fault = Fault(setup, job)
        server = Server(setup.database, setup.folder).start()
        fault.follow(server.url)
        with client(server, setup.token) as http:
            return fault.row("server SIGKILL + restart", http, "restart included")
    finally:
        server.stop()


@contextlib.contextmanager
def small_disk(folder: Path, megabytes: int) -> Iterator[Path]:
    folder.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)],
        check=True,
        capture_output=True,
    )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def fault_disk_full(root: Path) -> list[Any]:
    with small_disk(root / "small", 8) as small:
        setup = Setup(root, "disk-full", database=f"sqlite:///{small / 'service.sqlite'}")
        with job_on_one_server(setup, 2) as (_, http, fault):
            fill(small / "filler")
            time.sleep(3)
            refused = http.post("/jobs", json={"workspace": fault.job["workspace"]}).status_code
            health = http.get("/health").json()["status"]
            (small / "filler").unlink()

            def next_job(final: dict[str, Any]) -> str:
                later = setup.submit(http, patches=["demo_700_0"])
                return (
                    f"new job while full: {refused}; /health: {health}; "
                    f"next job: {wait(http, later['id'])['state']}"
                )

            return fault.row("disk full, then space again", http, next_job)


def fault_file_removed(root: Path) -> list[Any]:
    setup = Setup(root, "file-removed")
    with job_on_one_server(setup, 2) as (server, http, fault):
        saved = setup.folder / "saved"
        saved.mkdir()
        files = sorted(setup.folder.glob("service.sqlite*"))
        for path in files:
            path.rename(saved / path.name)
        time.sleep(4)
        health = httpx.get(server.url + "/api/v1/health").json()["status"]
        refused = http.post("/jobs", json={"workspace": fault.job["workspace"]}).status_code
        for path in files:
            (saved / path.name).rename(path)
        return fault.row(
            "database file removed, then back",
            http,
            f"health: {health}; new job meanwhile: {refused}",
        )


def fault_two_servers(root: Path) -> list[Any]:
    setup = Setup(root, "two-servers")
    first = Server(setup.database, setup.folder, workers=1).start()
    second = Server(setup.database, setup.folder, workers=1).start()
    try:
        with client(first, setup.token) as one, client(second, setup.token) as two:
            job = setup.submit(one, options=PLAIN)
            wait_done(one, job["id"], 3)
            fault = Fault(setup, job, second.url)
            seen: list[int] = []
            survivor = None
            while True:
                clients = (one, two) if survivor is None else (survivor,)
                states = [c.get(f"/jobs/{job['id']}").json() for c in clients]
                seen.extend(state["done"] for state in states)
                if states[-1]["state"] != "running":
                    break
                if survivor is None and len(seen) >= 10:  # kill the one that runs it
                    runs_first = bool(first.workers_now())
                    (first if runs_first else second).kill()
                    survivor = two if runs_first else one
                time.sleep(0.2)
            return fault.row(
                "two servers, the running one SIGKILLed",
                survivor or one,
                f"done count monotonic: {seen == sorted(seen)}",
            )
    finally:
        first.stop()
        second.stop()


def part_faults(root: Path) -> None:
    rows = []
    for fault in (
        fault_worker_kill,
        fault_server_kill,
        fault_disk_full,
        fault_file_removed,
        fault_two_servers,
    ):
        try:
            rows.append(fault(root))
        except Exception as exc:  # a fault the service did not survive is a result
            rows.append([fault.__name__, f"ERROR {exc}"[:70], "?", "?", "", "", "", "MISSED"])
    _table(
        "faults: every job ends done/failed/cancelled, 0 lost, 0 computed twice, answers go on",
        [
            "fault",
            "job ends",
            "lost",
            "twice",
            "status codes while it happened",
            "s",
            "note",
            "verdict",
        ],
        rows,
    )


# -------------------------------------------------------------------------- limits


def _rss_mb(server: Server) -> float:
    import psutil

    assert server.process is not None
    return psutil.Process(server.process.pid).memory_info().rss / 1e6


def _byte_a_second(port: int, limit: float = 30.0) -> float:
    """Seconds the server holds a client that sends its headers a byte a second."""
    import socket

    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as slow:
        slow.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
        slow.settimeout(1.0)
        while time.monotonic() - began < limit:
            try:
                slow.sendall(b"X")
                if slow.recv(1024) == b"":
                    break
            except TimeoutError:
                continue
            except OSError:
                break
    return time.monotonic() - began


def _uploaded(http: httpx.Client, setup: Setup) -> dict[str, str]:
    """The demo's workspace and patchset uploaded: their digests."""
    workspace = http.post("/workspaces", content=setup.workspace.read_bytes()).json()
    patchset = http.post("/patchsets", content=setup.patchset.read_bytes()).json()
    return {"workspace": workspace["digest"], "patchset": patchset["digest"]}


def part_limits(root: Path) -> None:
    """Issue 30's items, each as the probe sent it: the answer, and what it cost."""
    import socket

    setup = Setup(root, "limits")
    engine = db.connect(setup.database)
    bob = add_user(engine, "bob")
    engine.dispose()
    rows: list[list[Any]] = []

    def row(item: str, request: str, got: Any, target: str, ok: bool) -> None:
        rows.append([item, request, got, target, _verdict(ok)])

    with serving(setup.database, setup.folder) as server, client(server, setup.token) as http:
        docs = _uploaded(http, setup)
        one = {**docs, "patches": ["demo_700_0"]}
        before = _rss_mb(server)
        answer = http.post("/jobs", json={**one, "task": "nll_scan", "grid": [0, 1, 10**9]})
        time.sleep(3)
        grown = _rss_mb(server) - before
        row(
            "1",
            "nll grid of 10^9 values",
            f"{answer.status_code}, +{grown:.0f} MB in 3 s",
            "422, < 50 MB",
            answer.status_code == 422 and grown < 50,
        )
        for ntoys in (10**9, 10**18):
            answer = http.post(
                "/jobs", json={**one, "options": {"calctype": "toybased", "ntoys": ntoys}}
            )
            row("2", f"ntoys {ntoys:.0e}", answer.status_code, "422", answer.status_code == 422)
        codes = []
        with httpx.Client(base_url=server.url + "/api/v1", timeout=30) as anyone:
            for n in range(200):
                headers = {
                    "Authorization": "Bearer wrong",
                    "X-Forwarded-For": f"10.{n // 250}.{n % 250}.1",
                }
                codes.append(anyone.get("/me", headers=headers).status_code)
        row(
            "3",
            "200 wrong tokens, a new X-Forwarded-For each",
            f"{codes.count(429)} x 429",
            ">= 180 x 429",
            codes.count(429) >= 180,
        )
        time.sleep(61)  # (the limit's window: the rest of this part's requests are the peer's)
        for route in ("/workspaces", "/patchsets", "/models"):
            answer = http.post(route, content=b"9" * 100_000)
            row(
                "4",
                f"100,000-digit number to {route}",
                answer.status_code,
                "422",
                answer.status_code == 422,
            )
        spec = json.loads(setup.workspace.read_text())
        for sample in spec["channels"][0]["samples"]:
            sample["data"][0] = -abs(sample["data"][0]) - 1.0
        answer = http.post("/workspaces", content=json.dumps(spec).encode())
        row(
            "5",
            "a bin whose yields sum negative",
            answer.status_code,
            "422 naming the bin",
            answer.status_code == 422 and "bin 0" in answer.text,
        )
        raw_grid = json.dumps({**one, "task": "nll_scan", "grid": [0, 1, 2]})
        for name, body in (
            ("grid NaN", raw_grid.replace("[0, 1, 2]", "[NaN, 1, 5]")),
            ("grid 1e400", raw_grid.replace("[0, 1, 2]", "[0, 1e400, 5]")),
            ("grid reversed", raw_grid.replace("[0, 1, 2]", "[2, 1, 5]")),
            ("lockstep 'yes'", json.dumps({**one, "options": {"lockstep": "yes"}})),
            ("device gpu in the options", json.dumps({**one, "options": {"device": "gpu"}})),
            ("unknown measurement", json.dumps({**one, "options": {"measurement": "x"}})),
            (
                "fixed_params naming no parameter",
                json.dumps({**one, "options": {"fixed_params": {"x": 1}}}),
            ),
        ):
            answer = http.post("/jobs", content=body, headers={"content-type": "application/json"})
            row("6", name, answer.status_code, "422", answer.status_code == 422)
        answer = http.post("/models", content=b'{"name": "a", "values": [NaN], "patch": []}\n')
        row("6", "model values NaN", answer.status_code, "422", answer.status_code == 422)
        port = int(server.url.rsplit(":", 1)[1])
        held = _byte_a_second(port)
        row("8", "headers a byte a second", f"dropped after {held:.1f} s", "< 12 s", held < 12)
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(1000)]
        try:
            answer = httpx.get(server.url + "/api/v1/health", timeout=30)
        finally:
            for connection in idle:
                connection.close()
        row(
            "8",
            "1,000 idle connections, then a request",
            answer.status_code,
            "503 (--max-connections 1000)",
            answer.status_code == 503,
        )
        patch = json.loads(setup.patchset.read_text())["patches"][0]["patch"]
        model = {"name": '=HYPERLINK("http://x","y")', "values": [1, 2], "patch": patch}
        models = http.post("/models", content=(json.dumps(model) + "\n").encode()).json()
        job = http.post(
            "/jobs",
            json={
                "workspace": docs["workspace"],
                "models": models["digest"],
                "labels": ["=cmd|' /C calc'!A0", "m"],
            },
        ).json()
        wait(http, job["id"])
        text = http.get(f"/jobs/{job['id']}/results", params={"format": "csv"}).text
        cells = [c for line in csv.reader(io.StringIO(text)) for c in line]
        live = [c for c in cells if csv_cell(c) != c]  # (a cell that still begins as a formula)
        assert any(c.startswith("'=HYPERLINK") for c in cells), text[:500]
        row(
            "9",
            "a model and a label named as formulas, CSV",
            f"{len(live)} live formulas",
            "0",
            not live,
        )
        # fairness: bob's one point while alice's long job runs
        toys = {"calctype": "toybased", "ntoys": 2000}  # a toy study: 320 blocks of 250 toys
        big = http.post("/jobs", json={**docs, "options": toys}).json()
        while http.get(f"/jobs/{big['id']}").json()["state"] != "running":
            time.sleep(0.2)
        with client(server, bob) as other:
            mine = {**_uploaded(other, setup), "patches": ["demo_700_0"]}
            began = time.monotonic()
            small = other.post("/jobs", json=mine).json()
            wait(other, small["id"])
            took = time.monotonic() - began
        still = http.get(f"/jobs/{big['id']}").json()["state"]
        got = f"{took:.1f} s (alice: {still})"
        ok = took < 10 and still == "running"
        row("fair", "bob's 1 point while alice's toy study runs", got, "< 10 s", ok)
        http.delete(f"/jobs/{big['id']}")
    _table(
        "limits: issue 30's requests, one server",
        ["item", "request", "answer", "target", "verdict"],
        rows,
    )


# ---------------------------------------------------------------------------- fuzz


def part_fuzz(root: Path, examples: int) -> None:
    setup = Setup(root, "fuzz")
    # (negative cases send wrong tokens: the limit on them would answer 429 to the rest)
    options = ("--auth-failures-per-minute", "1000000")
    with (
        serving(setup.database, setup.folder, options=options) as server,
        client(server, setup.token) as http,
    ):
        setup.submit(http, patches=["demo_700_0"])
        start = time.perf_counter()
        sent, errors = fuzz(server.url, setup.token, examples)
        took = time.perf_counter() - start
        tracebacks = server.tracebacks()
    _table(
        f"fuzz: schemathesis, {examples} examples per operation and mode, {took:.0f} s",
        [
            "requests",
            "failures (every schemathesis check)",
            "tracebacks in the log",
            "target",
            "verdict",
        ],
        [
            [
                sent,
                len(errors),
                tracebacks,
                "0 failures, 0 tracebacks",
                _verdict(not errors and not tracebacks),
            ]
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="load,upload,limits,faults,fuzz")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load part")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--upload-mb", type=float, default=30.0)
    parser.add_argument("--pollers", type=int, default=40, help="clients polling in the upload")
    parser.add_argument("--fuzz-examples", type=int, default=50)
    args = parser.parse_args()
    parts = set(args.only.split(","))
    print(f"# fitaas service reliability ({os.cpu_count()} cores, {time.strftime('%Y-%m-%d')})")
    with tempfile.TemporaryDirectory(prefix="fitaas-reliability-") as scratch:
        root = Path(scratch)
        if "load" in parts:
            part_load(root, args.seconds, args.clients)
        if "upload" in parts:
            part_upload(root, args.upload_mb, args.pollers)
        if "limits" in parts:
            part_limits(root)
        if "faults" in parts:
            part_faults(root)
        if "fuzz" in parts:
            part_fuzz(root, args.fuzz_examples)


if __name__ == "__main__":
    main()
