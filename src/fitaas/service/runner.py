"""Runs the service's jobs: one queue per endpoint, its jobs sharing the endpoint's engine.

Fair shares: the jobs of an endpoint run side by side on one started engine, each keeping
only as many tasks in flight as the engine has workers (``Engine.window``), so that the
workers take turns between them; a user runs at most ``running_jobs`` jobs at once on an
endpoint (the others wait), and of the waiting jobs, the next to start is that of the user
with the fewest running, oldest first. A one-point job of one user so starts at once and
finishes within seconds while another user's big scan runs.

A job is a :func:`fitaas.scan` over stored documents into the shared results store (a
sweep's pallets one after another on one engine, a combination's combined pallet, a theory
scan's models streamed by :func:`fitaas.stream_scan`), so
points already computed (by any job or any ``fitaas scan`` on the same store) are reused
at once. Progress goes to the job's row after every point. Jobs found queued or running
when the service starts are started again: what was stored is reused, nothing finished is
lost or recomputed. Cancelling stops the job within a second (its local workers are
terminated); what finished stays. A finished job's engine waits for the next job on its
endpoint (:class:`~fitaas.service.warm_engines.WarmEngines`): its workers keep their imports,
workspaces and compiled structures.

Several servers may share one database. A server runs a job only while it holds the job's
lease (its name and a time, renewed every :data:`HEARTBEAT_SECONDS`): claiming is one
conditional ``UPDATE``, atomic in SQLite and PostgreSQL alike, so each job runs on one
server at a time; a server whose renewal finds the job cancelled (by any server) or claimed
by another stops it within seconds. A lease ends when its server stops (SIGTERM), when it
expires (:data:`LEASE_SECONDS` after the last renewal), or at once when its server was a
process of this host that is gone (SIGKILL): another server, or the restarted one, takes
the job over, reusing what was stored.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import sqlalchemy as sa

from fitaas.errors import FitaasError
from fitaas.inference import InferenceOptions
from fitaas.jobs.fit_jobs import FitProgress
from fitaas.jobs.gathering import ScanProgress, ScanStopped
from fitaas.jobs.scanning import scan
from fitaas.jobs.streaming import stream_scan
from fitaas.service import db
from fitaas.service.fit_tasks import FIT_TASKS, run_fit_job
from fitaas.service.job_inputs import JobInputs, NamedPallet, PalletCache, job_models
from fitaas.service.storage import StorageWatch
from fitaas.service.warm_engines import DEFAULT_KEEP_SECONDS, WarmEngines
from fitaas.store.sql import SqlResultStore

__all__ = ["JobRunner"]

# How long a job whose failure the database could not record waits to be marked again.
STORAGE_RETRY_SECONDS = 2.0
# A server renews the leases of its running jobs this often (and notices cancels then) ...
HEARTBEAT_SECONDS = 2.0
# ... and a lease not renewed for this long may be taken over by another server.
LEASE_SECONDS = 30.0
# How often a server looks for jobs that no live server holds.
SWEEP_SECONDS = 5.0
# Local workers yield to the server's own threads (API, pictures) when cores are scarce.
LOCAL_WORKER_NICENESS = 5
# Jobs that run at once on one endpoint, of all users.
PARALLEL_JOBS = 8

log = logging.getLogger("fitaas.service")


def _server_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _gone(owner: str) -> bool:
    """Whether a lease's server was a process of this host that no longer runs."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class JobRunner:
    """Background threads that run queued jobs.

    Args:
        engine: The service database.
        store: The shared results store.
        workers: Worker processes for endpoints that do not set their own.
    """

    def __init__(
        self,
        engine: sa.Engine,
        store: SqlResultStore,
        workers: int | None = None,
        keep_workers: float = DEFAULT_KEEP_SECONDS,
        running_jobs: int = 1,
    ):
        self.engine = engine
        self.store = store
        self.workers = workers
        self.running_jobs = running_jobs
        self.engines = WarmEngines(keep_workers)
        self._waiting: dict[str, list[tuple[str, int]]] = {}  # (job, owner) by endpoint
        self._active: dict[str, list[tuple[str, int]]] = {}
        self._threads: list[threading.Thread] = []
        self._stops: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._pending: set[str] = set()  # queued here or running here
        self._running: set[str] = set()
        self.name = _server_name()
        self.pallets = PalletCache(engine)
        self.storage = StorageWatch(engine)

    def start(self) -> None:
        """Start again every job that was queued or running when the service stopped,
        and keep the leases of running jobs and the search for orphaned jobs going."""
        self._sweep()
        thread = threading.Thread(target=self._keep, name="fitaas-leases", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _sweep(self) -> None:
        """Queue here the jobs no live server holds (never started, or their server gone)."""
        now = time.time()
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    db.jobs.c.id,
                    db.endpoints.c.name,
                    db.jobs.c.owner_id,
                    db.jobs.c.lease_owner,
                    db.jobs.c.lease_until,
                )
                .join(db.endpoints, db.endpoints.c.id == db.jobs.c.endpoint_id)
                .where(db.jobs.c.state.in_(("queued", "running")))
                .order_by(db.jobs.c.created)
            ).all()
        for job_id, endpoint, user, owner, until in rows:
            held_elsewhere = (
                owner not in (None, self.name)
                and until is not None
                and until >= now
                and not _gone(owner)
            )
            if job_id in self._pending or held_elsewhere:
                continue
            log.info("resuming job %s on %s", job_id, endpoint)
            self.submit(job_id, endpoint, user)

    def _keep(self) -> None:
        """Renew this server's leases; stop jobs that were cancelled or taken elsewhere."""
        last_sweep = time.monotonic()
        while not self._stopping.wait(HEARTBEAT_SECONDS):
            self.storage.check()
            self.engines.reap()
            try:
                self._renew()
                if time.monotonic() - last_sweep > SWEEP_SECONDS:
                    last_sweep = time.monotonic()
                    self._sweep()
            except sa.exc.OperationalError as exc:
                log.error("job leases: %s", db.storage_reason(exc))
            except Exception:  # a bug must not end the leases of every job
                log.exception("job leases")

    def _renew(self) -> None:
        with self._lock:
            running = list(self._running)
        for job_id in running:
            with self.engine.begin() as conn:
                kept = conn.execute(
                    sa.update(db.jobs)
                    .where(
                        db.jobs.c.id == job_id,
                        db.jobs.c.state == "running",
                        db.jobs.c.lease_owner == self.name,
                    )
                    .values(lease_until=time.time() + LEASE_SECONDS)
                ).rowcount
            if not kept:
                log.info("job %s: cancelled or taken over by another server; stopping", job_id)
                self.cancel(job_id)

    def _claim(self, job_id: str) -> bool:
        """Take the job's lease, unless a live server holds it; marks it running."""
        now = time.time()
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(db.jobs.c.lease_owner, db.jobs.c.lease_until).where(
                    db.jobs.c.id == job_id
                )
            ).first()
        if row is None:
            return False
        owner, until = row
        free = (
            owner is None
            or owner == self.name
            or (until is not None and until < now)
            or _gone(owner)
        )
        if not free:
            return False
        held = (
            db.jobs.c.lease_owner.is_(None)
            if owner is None
            else sa.and_(db.jobs.c.lease_owner == owner, db.jobs.c.lease_until == until)
        )
        with self.engine.begin() as conn:  # unless cancelled or claimed meanwhile
            return bool(
                conn.execute(
                    sa.update(db.jobs)
                    .where(
                        db.jobs.c.id == job_id,
                        db.jobs.c.state.in_(("queued", "running")),
                        held,
                    )
                    .values(
                        state="running",
                        started=sa.func.coalesce(db.jobs.c.started, now),
                        lease_owner=self.name,
                        lease_until=now + LEASE_SECONDS,
                    )
                ).rowcount
            )

    def stop(self, timeout: float = 30.0) -> None:
        """Stop waiting for running jobs (they stay ``running`` and resume at the next start,
        here or on another server at once: their leases are given up)."""
        self._stopping.set()
        with self._lock:
            for event in self._stops.values():
                event.set()
            self._changed.notify_all()
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.engines.close()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.update(db.jobs)
                    .where(db.jobs.c.lease_owner == self.name)
                    .values(lease_owner=None, lease_until=None)
                )
        except sa.exc.OperationalError as exc:
            log.error("giving up job leases: %s", db.storage_reason(exc))

    def submit(self, job_id: str, endpoint: str, owner: int) -> None:
        """Queue a job on its endpoint (``owner``: its user's id, for the fair shares)."""
        with self._lock:
            if job_id in self._pending:
                return
            self._pending.add(job_id)
            if endpoint not in self._waiting:
                self._waiting[endpoint], self._active[endpoint] = [], []
                thread = threading.Thread(
                    target=self._schedule,
                    args=(endpoint,),
                    name=f"fitaas-endpoint-{endpoint}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()
            self._waiting[endpoint].append((job_id, owner))
            self._changed.notify_all()

    def cancel(self, job_id: str) -> None:
        """Stop a job's running tasks within a second (its state is ``cancelled`` already)."""
        with self._lock:
            self._stops.setdefault(job_id, threading.Event()).set()

    def _next(self, endpoint: str) -> tuple[str, int] | None:
        """The waiting job to start now on ``endpoint`` (lock held): none while
        ``PARALLEL_JOBS`` run; else that of the user with the fewest running jobs (under
        ``running_jobs``), the oldest first."""
        active = self._active[endpoint]
        if len(active) >= PARALLEL_JOBS:
            return None
        running: dict[int, int] = {}
        for _, owner in active:
            running[owner] = running.get(owner, 0) + 1
        allowed = [j for j in self._waiting[endpoint] if running.get(j[1], 0) < self.running_jobs]
        if not allowed:
            return None
        return min(allowed, key=lambda job: running.get(job[1], 0))  # (min keeps the oldest)

    def _schedule(self, endpoint: str) -> None:
        """Start the endpoint's jobs as the fair-share rules allow (see the module's text)."""
        while True:
            with self._changed:
                found = None
                while not self._stopping.is_set():
                    found = self._next(endpoint)
                    if found is not None:
                        break
                    self._changed.wait(1.0)
                if found is None:
                    return
                self._waiting[endpoint].remove(found)
                self._active[endpoint].append(found)
                thread = threading.Thread(
                    target=self._serve,
                    args=(endpoint, found),
                    name=f"fitaas-job-{found[0][:8]}",
                    daemon=True,
                )
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _serve(self, endpoint: str, job: tuple[str, int]) -> None:
        job_id = job[0]
        try:
            if not self._stopping.is_set():
                self._run(job_id)
        except sa.exc.OperationalError as exc:  # disk full, read-only, database gone
            log.error("job %s: %s", job_id, db.storage_reason(exc))
            self.storage.noted(db.storage_reason(exc))
            self._fail(job_id, db.storage_reason(exc))
        except Exception:  # a bug must not kill the endpoint's queue
            log.exception("job %s", job_id)
            self._fail(job_id, "internal error: see the service log")
        finally:
            with self._changed:
                self._stops.pop(job_id, None)
                self._pending.discard(job_id)
                self._running.discard(job_id)
                self._active[endpoint].remove(job)
                self._changed.notify_all()

    def _fail(self, job_id: str, reason: str, attempt: int = 0) -> None:
        """Mark a job failed; if the database refuses even that, try again later (every
        ``STORAGE_RETRY_SECONDS``, logged once).

        The endpoint's thread goes on with the next job either way: a full disk fails the
        jobs that write, and once space returns the job is marked (what it stored is kept).
        """
        try:
            self._finish(job_id, "failed", reason)
        except sa.exc.OperationalError as exc:
            self.storage.noted(db.storage_reason(exc))
            if attempt == 0:
                log.error(
                    "job %s: cannot record its failure (%s); trying again every %g s",
                    job_id,
                    db.storage_reason(exc),
                    STORAGE_RETRY_SECONDS,
                )
            timer = threading.Timer(
                STORAGE_RETRY_SECONDS, self._fail, (job_id, reason, attempt + 1)
            )
            timer.daemon = True
            timer.start()

    def _mine(self) -> Any:
        """Rows this server may write: jobs it holds, or that no server holds."""
        return sa.or_(db.jobs.c.lease_owner == self.name, db.jobs.c.lease_owner.is_(None))

    def _update(self, job_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(db.jobs).where(db.jobs.c.id == job_id, self._mine()).values(**values)
            )

    def _finish(self, job_id: str, state: str, error: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(db.jobs)
                .where(
                    db.jobs.c.id == job_id,
                    db.jobs.c.state.in_(("queued", "running")),
                    self._mine(),
                )
                .values(
                    state=state,
                    error=error,
                    finished=time.time(),
                    lease_owner=None,
                    lease_until=None,
                )
            )

    def _run(self, job_id: str) -> None:
        with self.engine.connect() as conn:
            job = conn.execute(sa.select(db.jobs).where(db.jobs.c.id == job_id)).first()
            if job is None or job.state not in ("queued", "running"):
                return
            settings = conn.execute(
                sa.select(db.endpoints.c.settings).where(db.endpoints.c.id == job.endpoint_id)
            ).scalar_one()
        if not self._claim(job_id):
            return  # cancelled meanwhile, or running on another server

        with self._lock:
            self._running.add(job_id)
            stop = self._stops.setdefault(job_id, threading.Event())
        if self._stopping.is_set():
            stop.set()

        settings = self._settings(settings)
        try:
            pallets = self.pallets.get(job)
            compute = self.engines.take(job.endpoint_id, settings)
            # (jobs sharing the engine take turns: a few tasks each in flight)
            compute.window = max(compute.workers, 1)
            try:
                self._compute(job, pallets, compute, stop)
            except BaseException:
                self.engines.discard(compute)  # its running tasks stop with it
                raise
            self.engines.give_back(job.endpoint_id, settings, compute)
        except ScanStopped:
            return  # cancelled (state set by the request) or service stopping (resumes)
        except FitaasError as exc:
            self._finish(job_id, "failed", str(exc))
            return
        self._finish(job_id, "done")

    def _settings(self, settings: Any) -> dict[str, Any]:
        """An endpoint's settings, with the service's defaults for local workers."""
        settings = dict(settings)
        if settings.get("engine") == "local":
            if not settings.get("workers"):
                settings["workers"] = self.workers or 0
            settings["nice"] = settings.get("nice") or LOCAL_WORKER_NICENESS
        return settings

    def _compute(
        self, job: Any, pallets: list[NamedPallet], compute: Any, stop: threading.Event
    ) -> None:
        """Run a job's tasks on a started engine: a fit job's fits, a theory scan's models,
        or the scan of each of its pallets in turn (a sweep's progress adds up)."""
        job_id = job.id
        if job.task in FIT_TASKS:

            def fits(report: FitProgress) -> None:
                self._update(job_id, done=report.done, failed=report.failed, total=report.total)

            run_fit_job(pallets[0][1], job, self.store, compute, fits, stop)
            return
        before = [0, 0]  # points done and failed in the pallets already scanned

        def progress(report: ScanProgress) -> None:
            total = job.total if len(pallets) > 1 else report.total
            done, failed = before[0] + report.done, before[1] + report.failed
            self._update(job_id, done=done, failed=failed, total=total)

        options = InferenceOptions.from_dict(job.options)
        common = {"options": options, "kinds": (job.task,), "compute": compute}
        if JobInputs.from_json(job.inputs).kind == "models":
            stream_scan(
                pallets[0][1],
                job_models(self.engine, job),
                labels=pallets[0][1].labels,
                store=self.store,
                total=job.total,
                progress=progress,
                stop=stop,
                **common,
            )
            return
        for _, pallet in pallets:
            result = scan(
                pallet,
                patches=job.patches,
                store=self.store,
                progress=progress,
                stop=stop,
                **common,
            )
            before[0] += len(result)
            before[1] += len(result.failed)
