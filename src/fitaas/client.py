"""A Python client of the fitaas service.

Example:
    >>> client = fitaas.Client("http://127.0.0.1:8000", token)  # doctest: +SKIP
    >>> job = client.submit("BkgOnly.json", "patchset.json")
    >>> client.wait(job)
    >>> results = client.results(job)  # a ScanResult, as fitaas.scan returns it
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fitaas.errors import FitaasError

if TYPE_CHECKING:  # pragma: no cover - the client imports pyhf only to read results
    from fitaas.inference.likelihood_scan import LikelihoodScan
    from fitaas.inference.ranking import RankingResult
    from fitaas.inputs.pallets import PalletSpecs
    from fitaas.output.results import ScanResult

__all__ = ["Client", "Job", "ServiceError"]


class ServiceError(FitaasError):
    """The service refused a request (the message is its reason) or cannot be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Job:
    """A job as the service reports it (see ``GET /api/v1/jobs/{id}``)."""

    id: str
    owner: str
    endpoint: str
    group: str | None
    task: str
    state: str
    total: int
    done: int
    failed: int
    error: str | None
    workspace: str
    patchset: str | None
    patches: list[str] | None
    options: dict[str, Any]
    created: float
    started: float | None
    finished: float | None
    elapsed: float | None
    params: dict[str, Any] | None = None  # a ranking's POI, a likelihood scan's grid
    inputs: dict[str, Any] | None = None  # a sweep's or combination's pallets, models

    @property
    def sweep(self) -> list[str] | None:
        """A sweep's pallet names (``None``: not a sweep)."""
        inputs = self.inputs or {}
        if not inputs.get("pallets") or inputs.get("combine"):
            return None
        return [p["name"] for p in inputs["pallets"]]

    @property
    def finished_running(self) -> bool:
        """Whether the job is done, failed or cancelled."""
        return self.state in ("done", "failed", "cancelled")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        """From the service's JSON."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class Client:
    """Submit jobs to a fitaas service and fetch their results.

    Args:
        url: The service, e.g. ``http://127.0.0.1:8000``.
        token: Your token (default: the ``FITAAS_TOKEN`` environment variable).
        timeout: Seconds to wait for one HTTP request.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 120.0) -> None:
        try:
            import httpx
        except ImportError:
            raise FitaasError(
                "the service client needs httpx: pip install 'fitaas[service]'"
            ) from None

        token = token or os.environ.get("FITAAS_TOKEN")
        if not token:
            raise ServiceError("no token: pass token= or set FITAAS_TOKEN")
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceError(f"cannot reach {self.url}: {exc}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            if not isinstance(detail, str):
                detail = json.dumps(detail)
            raise ServiceError(
                f"{method} {path}: {response.status_code} {detail}", response.status_code
            )
        return response

    def _upload(self, kind: str, document: str | Path | dict[str, Any]) -> str:
        if isinstance(document, dict):
            body = gzip.compress(json.dumps(document).encode(), compresslevel=6)
        else:
            try:
                body = Path(document).read_bytes()
            except OSError as exc:
                raise ServiceError(f"{document}: cannot read ({exc.strerror})") from None
        headers = {
            "Content-Type": "application/gzip" if body[:2] == b"\x1f\x8b" else "application/json"
        }
        response = self._request("POST", f"/{kind}s", content=body, headers=headers)
        return str(response.json()["digest"])

    def upload_workspace(self, workspace: str | Path | dict[str, Any]) -> str:
        """Upload a workspace (a .json/.json.gz file or its decoded JSON); returns its digest."""
        return self._upload("workspace", workspace)

    def upload_patchset(self, patchset: str | Path | dict[str, Any]) -> str:
        """Upload a patchset (a .json/.json.gz file or its decoded JSON); returns its digest."""
        return self._upload("patchset", patchset)

    def upload_models(self, models: str | Path | Iterable[Mapping[str, Any]]) -> str:
        """Upload theory models: a ``.jsonl``/``.jsonl.gz`` file, a folder of patch files or
        an iterable of ``{"name", "values", "patch"}`` (checked here first, as ``fitaas
        scan --models`` reads them); returns their digest."""
        from fitaas.inputs.theory_models import model_line, model_source

        lines = (model_line(p) for p in model_source(models))
        body = gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=6)
        headers = {"Content-Type": "application/gzip"}
        return str(self._request("POST", "/models", content=body, headers=headers).json()["digest"])

    def submit(
        self,
        workspace: str | Path | dict[str, Any],
        patchset: str | Path | dict[str, Any] | None = None,
        patches: list[str] | None = None,
        task: str = "hypotest",
        endpoint: str | None = None,
        *,
        group: str | None = None,
        region: str | None = None,
        parameter: str | None = None,
        grid: tuple[float, float, int] | None = None,
        models: str | Path | Iterable[Mapping[str, Any]] | None = None,
        labels: Sequence[str] = (),
        **options: Any,
    ) -> Job:
        """Upload what is needed and submit a job.

        Args:
            workspace: A workspace file, a pallet directory or HEPData archive, an http(s)
                address, or decoded JSON.
            patchset: A patchset file or decoded JSON (found in a directory or archive).
            patches: A subset of patch names.
            task: ``"hypotest"``, ``"upper_limit"`` or ``"fit"`` for every point;
                ``"ranking"`` or ``"nll_scan"`` for one (``patches=[name]``, or none
                for a workspace without patchset).
            endpoint: Where to run it (default: the service's ``local`` endpoint).
            group: One of your groups to share the job with.
            region: The region folder of a directory or archive holding several.
            parameter: A ranking's POI or a likelihood scan's parameter (default: the POI).
            grid: A likelihood scan's ``(low, high, n)``.
            models: Theory models to scan over the background-only ``workspace`` instead of
                a patchset (see :meth:`upload_models`).
            labels: Names of the models' values.
            **options: Inference options (``InferenceOptions`` fields, e.g. ``poi_value=1``).

        Returns:
            The queued job.
        """
        from fitaas.inputs.pallets import pallet_specs

        if models is not None and patchset is not None:
            raise ServiceError("a theory scan scans its models: give no patchset")
        specs = pallet_specs(workspace, patchset, region)
        if models is not None:  # (a folder's patchset is not the scan's)
            specs = dataclasses.replace(specs, patchset=None)
        body = self._uploaded(specs)
        if models is not None:
            body.update(models=self.upload_models(models), labels=list(labels))
        if parameter is not None:
            body["parameter"] = parameter
        if grid is not None:
            body["grid"] = list(grid)
        return self._post_job(body, patches, task, options, endpoint, group)

    def submit_pallets(
        self,
        sources: Sequence[str | Path],
        *,
        combine: bool = False,
        join: str = "none",
        match: str = "names",
        all_regions: bool = False,
        region: str | None = None,
        patches: list[str] | None = None,
        task: str = "hypotest",
        endpoint: str | None = None,
        group: str | None = None,
        **options: Any,
    ) -> Job:
        """Submit several pallets as one job: a sweep (each pallet scanned, workers shared),
        or with ``combine`` the scan of their combination (as ``fitaas scan --combine``).

        Args:
            sources: Folders, archives, addresses, workspace files, or
                ``BkgOnly.json:patchset.json`` pairs (named as ``fitaas scan`` names them).
            combine: Scan the combination of the pallets.
            join: How the workspaces combine (``"none"``, ``"outer"``, ...).
            match: ``"names"`` or ``"values"``: which points of the analyses are one model.
            all_regions: Every region of a folder or archive holding several.
            region: The region to take where there are several.
            patches: A combination's subset of points (a sweep scans every point).
            task: ``"hypotest"``, ``"upper_limit"`` or ``"fit"``.
            endpoint: Where to run it.
            group: One of your groups to share the job with.
            **options: Inference options.

        Returns:
            The queued job; :meth:`sweep_results` gives a sweep's results by pallet.
        """
        from fitaas.inputs.pallets import pallet_specs
        from fitaas.jobs.sweeps import sweep_sources

        pallets = [
            {
                "name": entry.name,
                **self._uploaded(pallet_specs(entry.workspace, entry.patchset, entry.region)),
            }
            for entry in sweep_sources(sources, all_regions=all_regions, region=region)
        ]
        body = {"pallets": pallets, "combine": {"join": join, "match": match} if combine else None}
        return self._post_job(body, patches, task, options, endpoint, group)

    def _uploaded(self, specs: PalletSpecs) -> dict[str, Any]:
        """A pallet's documents uploaded: ``{"workspace", "patchset"}`` digests."""
        return {
            "workspace": self.upload_workspace(specs.workspace),
            "patchset": None if specs.patchset is None else self.upload_patchset(specs.patchset),
        }

    def _post_job(
        self,
        body: dict[str, Any],
        patches: list[str] | None,
        task: str,
        options: dict[str, Any],
        endpoint: str | None,
        group: str | None,
    ) -> Job:
        """Submit a job of ``body``'s inputs with what every job request carries."""
        common = {"patches": patches, "task": task, "options": options}
        request = {**body, **common, "endpoint": endpoint, "group": group}
        return Job.from_dict(self._request("POST", "/jobs", json=request).json())

    def job(self, job: Job | str) -> Job:
        """The job's current state."""
        return Job.from_dict(self._request("GET", f"/jobs/{_job_id(job)}").json())

    def jobs(self) -> list[Job]:
        """Your jobs and those shared with your groups, newest first."""
        return [Job.from_dict(j) for j in self._request("GET", "/jobs").json()]

    def endpoints(self) -> list[dict[str, Any]]:
        """The endpoints you may use."""
        return list(self._request("GET", "/endpoints").json())

    def cancel(self, job: Job | str) -> Job:
        """Cancel a job; finished results stay."""
        return Job.from_dict(self._request("DELETE", f"/jobs/{_job_id(job)}").json())

    def wait(
        self,
        job: Job | str,
        progress: bool = True,
        poll: float = 1.0,
        timeout: float | None = None,
    ) -> Job:
        """Wait until the job is done, failed or cancelled.

        Args:
            job: The job or its id.
            progress: Show a progress bar.
            poll: Seconds between two looks.
            timeout: Give up after this many seconds (``ServiceError``).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        current = self.job(job)
        bar = None
        if progress:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            bar.start()
            task = bar.add_task(f"job {current.id[:8]}", total=current.total)
        try:
            while not current.finished_running:
                if bar is not None:
                    bar.update(task, completed=current.done, total=current.total)
                if deadline is not None and time.monotonic() > deadline:
                    raise ServiceError(f"job {current.id} still {current.state} after {timeout} s")
                time.sleep(poll)
                current = self.job(current.id)
            if bar is not None:
                bar.update(task, completed=current.done, total=current.total)
        finally:
            if bar is not None:
                bar.stop()
        return current

    def results(
        self, job: Job | str, pallet: str | None = None
    ) -> ScanResult | RankingResult | LikelihoodScan:
        """The job's results so far: a :class:`~fitaas.output.results.ScanResult` (as
        :func:`fitaas.scan` returns it) for scans (of a sweep, its pallet ``pallet``,
        default the first); the ranking or likelihood scan of those jobs."""
        from fitaas.inference.likelihood_scan import LikelihoodScan
        from fitaas.inference.ranking import RankingResult
        from fitaas.output.results import ScanResult

        data = self.results_json(job, pallet) if pallet else self.results_json(job)
        if "pallets" in data:  # a sweep: its first pallet
            data = next(iter(data["pallets"].values()))
        if "impacts" in data:
            return RankingResult.from_dict(data)
        if "delta_twice_nll" in data:
            return LikelihoodScan.from_dict(data)
        return ScanResult.from_dict(data)

    def sweep_results(self, job: Job | str) -> dict[str, ScanResult]:
        """A sweep job's results so far, each pallet's by its name, in order."""
        from fitaas.output.results import ScanResult

        data = self.results_json(job)
        if "pallets" not in data:
            raise ServiceError(f"job {_job_id(job)} is not a sweep")
        return {name: ScanResult.from_dict(each) for name, each in data["pallets"].items()}

    def results_json(self, job: Job | str, pallet: str | None = None) -> dict[str, Any]:
        """The job's results so far as the service sends them: the JSON ``fitaas scan -o
        results.json`` writes (strict: ``null`` where the file has ``NaN``); a sweep's as
        ``{"pallets": {name: results}}``, or its pallet ``pallet``'s."""
        params = {"format": "json", **({"pallet": pallet} if pallet else {})}
        response = self._request("GET", f"/jobs/{_job_id(job)}/results", params=params)
        return dict(response.json())

    def results_csv(self, job: Job | str, pallet: str | None = None) -> str:
        """A scan job's results so far as CSV text (one row per point; a sweep's per
        ``pallet``)."""
        params = {"format": "csv", **({"pallet": pallet} if pallet else {})}
        return str(self._request("GET", f"/jobs/{_job_id(job)}/results", params=params).text)


def _job_id(job: Job | str) -> str:
    return job.id if isinstance(job, Job) else job
