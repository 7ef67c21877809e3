"""Runs the service's jobs: one queue per endpoint, one job at a time on each.

A job is a :func:`fitaas.scan` over stored documents into the shared results store, so
points already computed (by any job or any ``fitaas scan`` on the same store) are reused
at once. Progress goes to the job's row after every point. Jobs found queued or running
when the service starts are started again: what was stored is reused, nothing finished is
lost or recomputed. Cancelling stops the job within a second (its local workers are
terminated); what finished stays.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from typing import Any

import sqlalchemy as sa

from fitaas.errors import FitaasError
from fitaas.inference import InferenceOptions
from fitaas.pallets import Pallet
from fitaas.scanning import ScanProgress, ScanStopped, scan
from fitaas.service import db
from fitaas.service.documents import load_document
from fitaas.sql_store import SqlResultStore

__all__ = ["JobRunner", "PalletCache", "pallet_of"]

# How long a job whose failure the database could not record waits to be marked again.
STORAGE_RETRY_SECONDS = 2.0

log = logging.getLogger("fitaas.service")


def pallet_of(engine: sa.Engine, job: Any) -> Pallet:
    """The pallet of a job row (documents were validated at upload)."""
    workspace = load_document(engine, job.workspace_digest)
    patchset = load_document(engine, job.patchset_digest) if job.patchset_digest else None
    return Pallet.from_specs(workspace, patchset, verify=False)


class PalletCache:
    """The pallets of recent jobs, so that following a job does not rebuild its pallet.

    Args:
        engine: The service database.
        size: How many pallets to keep.
    """

    def __init__(self, engine: sa.Engine, size: int = 8) -> None:
        self.engine = engine
        self.size = size
        self._pallets: OrderedDict[tuple[str, str | None], Pallet] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job: Any) -> Pallet:
        """The pallet of a job row."""
        key = (job.workspace_digest, job.patchset_digest)
        with self._lock:
            if key in self._pallets:
                self._pallets.move_to_end(key)
                return self._pallets[key]
        pallet = pallet_of(self.engine, job)
        with self._lock:
            self._pallets[key] = pallet
            while len(self._pallets) > self.size:
                self._pallets.popitem(last=False)
        return pallet


class JobRunner:
    """Background threads that run queued jobs.

    Args:
        engine: The service database.
        store: The shared results store.
        workers: Worker processes for endpoints that do not set their own.
    """

    def __init__(self, engine: sa.Engine, store: SqlResultStore, workers: int | None = None):
        self.engine = engine
        self.store = store
        self.workers = workers
        self._queues: dict[str, queue.Queue[str | None]] = {}
        self._threads: list[threading.Thread] = []
        self._stops: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.pallets = PalletCache(engine)

    def start(self) -> None:
        """Start again every job that was queued or running when the service stopped."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(db.jobs.c.id, db.endpoints.c.name)
                .join(db.endpoints, db.endpoints.c.id == db.jobs.c.endpoint_id)
                .where(db.jobs.c.state.in_(("queued", "running")))
                .order_by(db.jobs.c.created)
            ).all()
        for job_id, endpoint in rows:
            log.info("resuming job %s on %s", job_id, endpoint)
            self.submit(job_id, endpoint)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop waiting for running jobs (they stay ``running`` and resume at the next start)."""
        self._stopping.set()
        with self._lock:
            for event in self._stops.values():
                event.set()
        for q in self._queues.values():
            q.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def submit(self, job_id: str, endpoint: str) -> None:
        """Queue a job on its endpoint."""
        with self._lock:
            q = self._queues.get(endpoint)
            if q is None:
                q = self._queues[endpoint] = queue.Queue()
                thread = threading.Thread(
                    target=self._serve, args=(q,), name=f"fitaas-endpoint-{endpoint}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        q.put(job_id)

    def cancel(self, job_id: str) -> None:
        """Stop a job's running tasks within a second (its state is ``cancelled`` already)."""
        with self._lock:
            self._stops.setdefault(job_id, threading.Event()).set()

    def _serve(self, q: queue.Queue[str | None]) -> None:
        while not self._stopping.is_set():
            job_id = q.get()
            if job_id is None:
                return
            try:
                self._run(job_id)
            except sa.exc.OperationalError as exc:  # disk full, read-only, database gone
                log.error("job %s: %s", job_id, db.storage_reason(exc))
                self._fail(job_id, db.storage_reason(exc))
            except Exception:  # a bug must not kill the endpoint's queue
                log.exception("job %s", job_id)
                self._fail(job_id, "internal error: see the service log")
            finally:
                with self._lock:
                    self._stops.pop(job_id, None)

    def _fail(self, job_id: str, reason: str) -> None:
        """Mark a job failed; if the database refuses even that, try again later.

        The endpoint's thread goes on with the next job either way: a full disk fails the
        jobs that write, and once space returns the job is marked (what it stored is kept).
        """
        try:
            self._finish(job_id, "failed", reason)
        except sa.exc.OperationalError as exc:
            log.error(
                "job %s: cannot record its failure (%s); trying again in %g s",
                job_id,
                db.storage_reason(exc),
                STORAGE_RETRY_SECONDS,
            )
            timer = threading.Timer(STORAGE_RETRY_SECONDS, self._fail, (job_id, reason))
            timer.daemon = True
            timer.start()

    def _update(self, job_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(db.jobs).where(db.jobs.c.id == job_id).values(**values))

    def _finish(self, job_id: str, state: str, error: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(db.jobs)
                .where(db.jobs.c.id == job_id, db.jobs.c.state.in_(("queued", "running")))
                .values(state=state, error=error, finished=time.time())
            )

    def _run(self, job_id: str) -> None:
        with self.engine.connect() as conn:
            job = conn.execute(sa.select(db.jobs).where(db.jobs.c.id == job_id)).first()
            if job is None or job.state not in ("queued", "running"):
                return
            settings = conn.execute(
                sa.select(db.endpoints.c.settings).where(db.endpoints.c.id == job.endpoint_id)
            ).scalar_one()
        with self.engine.begin() as conn:  # unless it was cancelled meanwhile
            started = conn.execute(
                sa.update(db.jobs)
                .where(db.jobs.c.id == job_id, db.jobs.c.state.in_(("queued", "running")))
                .values(state="running", started=job.started or time.time())
            ).rowcount
        if not started:
            return

        with self._lock:
            stop = self._stops.setdefault(job_id, threading.Event())
        if self._stopping.is_set():
            stop.set()

        def progress(report: ScanProgress) -> None:
            self._update(job_id, done=report.done, failed=report.failed, total=report.total)

        from fitaas.engines.endpoint import engine_from_settings

        try:
            pallet = self.pallets.get(job)
            options = InferenceOptions.from_dict(job.options)
            settings = dict(settings)
            if settings.get("engine") == "local" and not settings.get("workers"):
                settings["workers"] = self.workers or 0
            compute = engine_from_settings(settings)
            with compute:
                scan(
                    pallet,
                    patches=job.patches,
                    options=options,
                    kinds=(job.task,),
                    engine=compute,
                    store=self.store,
                    progress=progress,
                    stop=stop,
                )
        except ScanStopped:
            return  # cancelled (state set by the request) or service stopping (resumes)
        except FitaasError as exc:
            self._finish(job_id, "failed", str(exc))
            return
        self._finish(job_id, "done")
