"""Benchmark: a service's jobs one after another, with the endpoint's workers kept between
jobs (``fitaas serve --keep-workers 300``, the default) and stopped after each (``0``, as
before).

A real ``fitaas serve`` on loopback (SQLite), one user, the ``local`` endpoint (2 workers).
Each job scans points of one pallet that no job scanned before (nothing comes from the
store), so every job computes; printed per job: seconds from the submit to its first
finished point and to its end, for both settings side by side, with the ratio.

    python benchmarks/service_jobs.py                         # sbottom/RegionA, 4 jobs of 12
    python benchmarks/service_jobs.py --pallet 1Lbb --jobs 3 --points 6
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from common import pallet_folder

FITAAS = Path(sys.executable).with_name("fitaas")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(folder: Path, keep: float) -> tuple[subprocess.Popen[bytes], str, str]:
    database = f"sqlite:///{folder / 'service.sqlite'}"
    token = subprocess.run(
        [str(FITAAS), "admin", "--database", database, "user", "add", "bench"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    port = _port()
    process = subprocess.Popen(
        [str(FITAAS), "serve", "--database", database, "--port", str(port), "--workers", "2",
         "--keep-workers", str(keep)],
        cwd=folder, stdout=(folder / "serve.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/openapi.json", timeout=2).status_code == 200:
                return process, url, token
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError((folder / "serve.log").read_text()[-2000:])


def _jobs(pallet: Path, keep: float, jobs: int, points: int) -> list[tuple[float, float]]:
    """(seconds to the first finished point, seconds to the end) of each job."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env_cache = folder / "cache"
        os.environ["FITAAS_CACHE"] = str(env_cache)  # (read by the server it starts)
        process, url, token = _serve(folder, keep)
        try:
            http = httpx.Client(
                base_url=url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=120
            )
            files = {kind: (pallet / f"{name}").read_bytes() for kind, name in _files(pallet)}
            workspace = http.post("/workspaces", content=files["workspace"]).json()["digest"]
            patchset = http.post("/patchsets", content=files["patchset"]).json()["digest"]
            names = [p["metadata"]["name"] for p in _patchset(pallet)["patches"]]
            out = []
            for index in range(jobs):
                chosen = names[index * points : (index + 1) * points]
                start = time.perf_counter()
                job = http.post(
                    "/jobs",
                    json={"workspace": workspace, "patchset": patchset, "patches": chosen},
                ).json()
                first = None
                while True:
                    state = http.get(f"/jobs/{job['id']}").json()
                    if first is None and state["done"] >= 1:
                        first = time.perf_counter() - start
                    if state["state"] in ("done", "failed", "cancelled"):
                        break
                    time.sleep(0.02)
                assert state["state"] == "done", state
                out.append((first or 0.0, time.perf_counter() - start))
            return out
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)


def _files(pallet: Path) -> list[tuple[str, str]]:
    found = {p.name for p in pallet.iterdir()}
    workspace = next(n for n in ("BkgOnly.json", "BkgOnly.json.gz") if n in found)
    patchset = next(n for n in ("patchset.json", "patchset.json.gz") if n in found)
    return [("workspace", workspace), ("patchset", patchset)]


def _patchset(pallet: Path) -> Any:
    import gzip

    name = dict(_files(pallet))["patchset"]
    raw = (pallet / name).read_bytes()
    return json.loads(gzip.decompress(raw) if name.endswith(".gz") else raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pallet", default="sbottom/RegionA")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--points", type=int, default=12, help="points per job")
    args = parser.parse_args()
    pallet = pallet_folder(args.pallet)
    kept = _jobs(pallet, 300.0, args.jobs, args.points)
    stopped = _jobs(pallet, 0.0, args.jobs, args.points)
    print(f"\n{args.pallet}: {args.jobs} jobs of {args.points} new points each, 2 local workers\n")
    print(
        "| job | first point, kept s | first point, stopped s | ratio | job, kept s "
        "| job, stopped s | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for index, ((f_kept, t_kept), (f_stop, t_stop)) in enumerate(zip(kept, stopped, strict=True)):
        print(
            f"| {index + 1} | {f_kept:.2f} | {f_stop:.2f} | {f_stop / f_kept:.1f}x "
            f"| {t_kept:.2f} | {t_stop:.2f} | {t_stop / t_kept:.1f}x |"
        )


if __name__ == "__main__":
    main()
