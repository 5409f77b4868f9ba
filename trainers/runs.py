"""Where a training run is, readable from any machine that sees its folder.

Rank 0 keeps ``RUN/run.json`` up to date (atomically: a reader on another machine sees
the old or the new file, never half of one): the state, epoch and step, the last
validation figures, the newest sample grid, the Slurm job, and a heartbeat every
``HEARTBEAT_S``. ``f2f-cam runs`` reads it; it imports no torch.

States as written: "queued" (submitted to Slurm), "starting" (the dataset is there), "running",
"requeued" (a checkpoint saved at Slurm's warning, the job sent back to the queue),
"stopped" (interrupted: resumable), "finished" (the persona installed), "failed".
A reader turns "running" into "stopped" when the writer is gone (its process on this
host, its Slurm job, or no heartbeat for ``STALE_S``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from f2f_cam import paths
from f2f_cam.atomic import write_text

RUN_JSON = "run.json"
HEARTBEAT_S = 30.0
STALE_S = 600.0  # no heartbeat for this long: the writer is gone
_lock = threading.Lock()  # the heartbeat thread and the training loop both write


def runs_root() -> Path:
    return paths.data_dir() / "runs"


def index_file() -> Path:
    """Runs kept outside ``runs_root()`` (``--workdir`` on shared storage), by name."""
    return paths.data_dir() / "runs.json"


def read_state(run_dir: Path) -> dict:
    try:
        state = json.loads((Path(run_dir) / RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def update(run_dir: Path, **fields) -> dict:
    """Merge ``fields`` into the run's state and write it (with the time and writer)."""
    run_dir = Path(run_dir)
    with _lock:
        state = read_state(run_dir)
        state.update(fields)
        state.update(updated=time.time(), host=socket.gethostname(), pid=os.getpid())
        job = os.environ.get("SLURM_JOB_ID")
        if job and "slurm_job" not in fields:  # written from inside a job: that job
            state.update(slurm_job=job, slurm_restarts=int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0))
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / RUN_JSON, json.dumps(state, indent=1, sort_keys=True))
    return state


def register(name: str, run_dir: Path) -> None:
    """Remember a run kept outside ``runs_root()`` so that ``f2f-cam runs`` finds it."""
    run_dir = Path(run_dir).resolve()
    if run_dir.parent == runs_root().resolve():
        return
    index = _read_index()
    if index.get(name) != str(run_dir):
        index[name] = str(run_dir)
        index_file().parent.mkdir(parents=True, exist_ok=True)
        write_text(index_file(), json.dumps(index, indent=1, sort_keys=True))


def _read_index() -> dict:
    try:
        index = json.loads(index_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def run_dirs() -> dict[str, Path]:
    """Every run this user has: the folders in ``runs_root()`` and the indexed ones."""
    found: dict[str, Path] = {}
    root = runs_root()
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if d.is_dir() and ((d / RUN_JSON).exists() or (d / "checkpoints").is_dir()):
                found[d.name] = d
    for name, folder in _read_index().items():
        if isinstance(folder, str) and Path(folder).is_dir():
            found.setdefault(name, Path(folder))
    return found


class Heartbeat:
    """Rank 0's ``update(run_dir, step=...)`` every ``HEARTBEAT_S`` from a thread, so a
    reader can tell a long epoch from a dead writer."""

    def __init__(self, run_dir: Path, progress, every: float = HEARTBEAT_S):
        self.run_dir, self.progress, self.every = run_dir, progress, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="f2f-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                update(self.run_dir, **self.progress())
            except OSError:
                pass  # a full or vanished disk: the training loop will say so

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# -- reading: what a user sees ---------------------------------------------------------


def slurm_state(job: str) -> str | None:
    """What Slurm says of ``job`` now (RUNNING, PENDING, ...; GONE: not in the queue any
    more), or None when there is no answer (no Slurm here, the controller unreachable)."""
    if not shutil.which("squeue"):
        return None
    try:
        proc = subprocess.run(["squeue", "-h", "-j", str(job), "-o", "%T"], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = proc.stdout.strip()
    if proc.returncode == 0:
        return out.splitlines()[0] if out else "GONE"
    return "GONE" if "Invalid job id" in proc.stderr else None


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


def live_state(state: dict, now: float | None = None) -> tuple[str, str]:
    """(state, detail) as a user should read them: a "running" or "queued" run whose
    writer is gone reads "stopped"."""
    now = time.time() if now is None else now
    s = state.get("state") or "unknown"
    job = state.get("slurm_job")
    if s not in ("running", "queued", "requeued", "starting"):
        return s, ""
    if job:
        queue = slurm_state(job)
        if queue == "GONE":
            return "stopped", f"Slurm job {job} is no longer in the queue"
        if queue is not None:
            return ("running" if queue in ("RUNNING", "COMPLETING") else "queued"), f"Slurm job {job}: {queue}"
    if state.get("host") == socket.gethostname() and not job and not _pid_alive(state.get("pid")):
        return "stopped", "its process is gone"
    age = now - float(state.get("updated") or 0)
    if age > STALE_S:
        return "stopped", f"no news for {age / 60:.0f} min"
    return s, f"Slurm job {job}" if job else f"pid {state.get('pid')} on {state.get('host')}"


def summary(name: str, run_dir: Path) -> dict:
    """One run as ``f2f-cam runs`` lists it (also its --json)."""
    state = read_state(run_dir)
    if not state:  # a run from before run.json: its metrics say how far it got
        state = {"state": "stopped" if (run_dir / "checkpoints" / "last.pt").exists() else "unknown"}
        rows = last_metrics(run_dir, 1)
        if rows:
            state.update(epoch=int(float(rows[-1].get("epoch", 0))), val=_val(rows[-1]))
    live, detail = live_state(state)
    samples = sorted((run_dir / "samples").glob("epoch_*.png")) if (run_dir / "samples").is_dir() else []
    return {
        "name": name, "run_dir": str(run_dir), "state": live, "detail": detail,
        "epoch": state.get("epoch"), "epochs": state.get("epochs"), "step": state.get("step"),
        "steps": state.get("steps"), "val": state.get("val") or {}, "slurm_job": state.get("slurm_job"),
        "slurm_restarts": state.get("slurm_restarts"), "persona": state.get("persona"),
        "samples": str(samples[-1]) if samples else None, "updated": state.get("updated"),
        "world_size": state.get("world_size"), "ranks_in_sync": state.get("ranks_in_sync"),
        "log": state.get("log"), "stopped": state.get("stopped"),
    }


def last_metrics(run_dir: Path, n: int) -> list[dict]:
    """The last ``n`` rows of the run's metrics.csv."""
    import csv

    try:
        with open(Path(run_dir) / "metrics.csv", newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))[-n:]
    except (OSError, csv.Error):
        return []


def _val(row: dict) -> dict:
    out = {}
    for key in ("val_l1", "val_psnr", "val_ssim"):
        try:
            out[key] = float(row[key])
        except (KeyError, TypeError, ValueError):
            pass
    return out
