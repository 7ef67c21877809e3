"""A real one-node Slurm cluster for the tests, started from Debian's slurm-wlm and munge.

No systemd here: munged runs as user munge, slurmctld and slurmd daemonize themselves with
a configuration in a scratch folder (facts in ../shared/notes/infrastructure.md).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


def available() -> bool:
    """Whether the Slurm and munge daemons are installed (``.ci/run`` installs them)."""
    return all(shutil.which(b) for b in ("slurmctld", "slurmd", "munged", "sinfo", "sbatch"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def slurm_cluster(folder: Path) -> Iterator[dict[str, str]]:
    """Start munge + slurmctld + slurmd; yield the environment clients need; stop them."""
    folder.mkdir(parents=True, exist_ok=True)
    munge_run = Path("/run/munge")
    munge_run.mkdir(parents=True, exist_ok=True)
    shutil.chown(munge_run, "munge", "munge")
    munge_pid = munge_run / "munged.pid"
    started_munge = False
    if not (munge_run / "munge.socket.2").exists():
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
        started_munge = True
    host = socket.gethostname().split(".")[0]
    node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True)
    node_line = node.stdout.splitlines()[0]
    conf = folder / "slurm.conf"
    conf.write_text(
        "\n".join(
            [
                "ClusterName=fitaas-test",
                f"SlurmctldHost={host}",
                "SlurmUser=root",
                f"SlurmctldPort={_free_port()}",
                f"SlurmdPort={_free_port()}",
                f"StateSaveLocation={folder}/state",
                f"SlurmdSpoolDir={folder}/spool",
                f"SlurmctldPidFile={folder}/slurmctld.pid",
                f"SlurmdPidFile={folder}/slurmd.pid",
                f"SlurmctldLogFile={folder}/slurmctld.log",
                f"SlurmdLogFile={folder}/slurmd.log",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "MpiDefault=none",
                "MailProg=/bin/true",
                "ReturnToService=2",
                node_line,
                "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )
    )
    for sub in ("state", "spool"):
        (folder / sub).mkdir(exist_ok=True)
    env = {"SLURM_CONF": str(conf)}
    full_env = {**os.environ, **env}
    subprocess.run(["slurmctld", "-f", str(conf)], env=full_env, check=True)
    subprocess.run(["slurmd", "-f", str(conf)], env=full_env, check=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = subprocess.run(
                ["sinfo", "-h", "-o", "%T"], env=full_env, capture_output=True, text=True
            )
            if out.returncode == 0 and out.stdout.strip() in ("idle", "mixed", "allocated"):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"slurm did not come up: {out.stdout} {out.stderr}")
        yield env
    finally:
        subprocess.run(["scontrol", "shutdown"], env=full_env, capture_output=True)
        time.sleep(0.5)
        for pid_file in ("slurmctld.pid", "slurmd.pid"):
            pid = folder / pid_file
            if pid.exists():
                with suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid.read_text().strip()), 15)
        if started_munge and munge_pid.exists():
            with suppress(ProcessLookupError, ValueError):
                os.kill(int(munge_pid.read_text().strip()), 15)
