"""Training on a cluster (issue 14): the job script, `f2f-cam runs`, and a live Slurm.

The live tests start a one-node Slurm (2 CPUs) with ``scripts/slurm_local.sh`` (Debian's
slurmctld, slurmd and munge, which ``.ci/run`` installs), submit tiny runs with
`f2f-cam train --slurm` as a user would, and read what they left. Where Slurm cannot
start, they fail with the reason; ``F2F_CAM_SKIP_SLURM=1`` skips them, saying so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--size", "64", "--ngf", "8", "--ndf", "8", "--frames", "30", "--batch-size", "2"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from trainers import synth

    path = tmp_path_factory.mktemp("slurmclip") / "clip.mp4"
    synth.write_video(path, synth.SynthSpec(width=320, height=240, fps=15.0, seconds=2.0, shift=20.0, seed=4))
    return path


# -- without Slurm: the script, the options, the run list -----------------------------------------


def test_dry_run_writes_a_script_that_reads_back_as_the_same_run(clip, tmp_path):
    import click

    from f2f_cam.cli_train import train
    from trainers.config import TrainConfig

    proc = run_cli("train", clip, "--name", "dry", *TINY, "--epochs", "3", "--no-dropout", "--slurm-dry-run",
                   "--nodes", "2", "--gpus-per-node", "4", "--cpus-per-task", "8", "--time", "02:00:00",
                   "--partition", "gpu", "--account", "lab", "--quiet")
    assert proc.returncode == 0, proc.stderr
    script = proc.stdout
    assert "(not submitted); submit it with: sbatch" in proc.stderr
    run = Path(os.environ["F2F_CAM_DATA_DIR"]) / "runs" / "dry"
    assert (run / "slurm" / "train.sbatch").read_text() == script.rstrip("\n") + "\n"
    assert (run / "dataset" / "dataset.json").exists()  # built here, before any job
    sbatch = dict(re.findall(r"^#SBATCH --([a-z-]+)=(\S+)$", script, re.M))
    assert sbatch["nodes"] == "2" and sbatch["ntasks-per-node"] == "4" and sbatch["gpus-per-node"] == "4"
    assert sbatch["cpus-per-task"] == "8" and sbatch["time"] == "02:00:00" and sbatch["signal"] == "USR1@120"
    assert sbatch["partition"] == "gpu" and sbatch["account"] == "lab"
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    if shutil.which("shellcheck"):
        check = subprocess.run(["shellcheck", "-s", "bash", "-"], input=script, text=True, capture_output=True)
        assert check.returncode == 0, check.stdout
    # The srun line's options, given to `f2f-cam train`, make the same TrainConfig.
    srun = script[script.index("srun "):script.index("status=$?")].replace("\\\n", " ")
    args = srun.split('"$PYTHON" -m f2f_cam train ')[1].split()
    ctx = train.make_context("train", [a.strip('"') for a in args])
    p = ctx.params
    assert p["slurm_job"] and p["device"] == "cuda" and p["epochs"] == 3 and p["no_dropout"]
    assert TrainConfig(size=p["size"], ngf=p["ngf"], ndf=p["ndf"], epochs=p["epochs"], batch_size=p["batch_size"],
                       dropout=not p["no_dropout"], device="cuda") == TrainConfig(
        size=64, ngf=8, ndf=8, epochs=3, batch_size=2, dropout=False, device="cuda")
    assert isinstance(ctx, click.Context)


@pytest.mark.parametrize("args, message", [
    (["--time", "soon"], "invalid --time 'soon'"),
    (["--nodes", "0"], "invalid --nodes 0"),
    (["--gpus-per-node", "-1"], "invalid --gpus-per-node -1"),
    (["--partition", "a b"], "invalid --partition 'a b'"),
])
def test_bad_slurm_options_are_one_line_and_write_nothing(clip, args, message):
    proc = run_cli("train", clip, "--name", "bad", *TINY, "--slurm-dry-run", *args)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (Path(os.environ["F2F_CAM_DATA_DIR"]) / "runs" / "bad").exists()


def test_slurm_without_sbatch_says_where_to_run_it(clip, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    proc = run_cli("train", clip, "--name", "nosb", *TINY, "--slurm")
    assert proc.returncode == 1 and "sbatch not found" in proc.stderr and "--slurm-dry-run" in proc.stderr
    assert not (Path(os.environ["F2F_CAM_DATA_DIR"]) / "runs" / "nosb").exists()


def test_runs_lists_states_as_a_user_reads_them(tmp_path):
    from trainers import runs

    root = runs.runs_root()
    runs.update(root / "done", name="done", state="finished", epoch=4, epochs=4, val={"val_psnr": 20.5},
                persona="/p/done")
    runs.update(root / "gone", name="gone", state="running", epoch=2, epochs=9)
    state = json.loads((root / "gone" / "run.json").read_text())
    state.update(pid=2 ** 22 + 12345)  # this host, a process that is not there
    (root / "gone" / "run.json").write_text(json.dumps(state))
    runs.update(tmp_path / "far", name="far", state="running", epoch=1)  # elsewhere: --workdir
    runs.register("far", tmp_path / "far")
    state = json.loads((tmp_path / "far" / "run.json").read_text())
    state.update(host="node-17", updated=time.time() - 3600)  # another machine, silent for an hour
    (tmp_path / "far" / "run.json").write_text(json.dumps(state))

    proc = run_cli("runs", "--json")
    assert proc.returncode == 0, proc.stderr
    got = {r["name"]: r for r in json.loads(proc.stdout)}
    assert got["done"]["state"] == "finished" and got["done"]["persona"] == "/p/done"
    assert got["gone"]["state"] == "stopped" and "process is gone" in got["gone"]["detail"]
    assert got["far"]["state"] == "stopped" and "no news for 60 min" in got["far"]["detail"]
    text = run_cli("runs").stdout
    assert "gone: stopped at epoch 2" in text and "done: finished" in text and "PSNR 20.50" in text
    proc = run_cli("runs", "show", "nobody")
    assert proc.returncode == 1 and "no training run named 'nobody'" in proc.stderr


# -- a live Slurm ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A one-node Slurm for this module; SLURM_CONF points the clients at it."""
    if os.environ.get("F2F_CAM_SKIP_SLURM") == "1":
        pytest.skip("F2F_CAM_SKIP_SLURM=1: the live Slurm tests are skipped on purpose")
    folder = tmp_path_factory.mktemp("slurm")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "slurm_local.sh"), "start", str(folder)],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"Slurm could not start: {(proc.stderr or proc.stdout).strip()}")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(folder / "slurm.conf")
    yield folder
    subprocess.run(["bash", str(ROOT / "scripts" / "slurm_local.sh"), "stop", str(folder)], timeout=60)
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


def job_info(job: str) -> dict:
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def wait_for(what, predicate, timeout: float, every: float = 0.3):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def submit(clip, name: str, *extra: str) -> tuple[str, Path]:
    proc = run_cli("train", clip, "--name", name, *TINY, "--slurm", "--tasks-per-node", "2",
                   "--cpus-per-task", "1", "--quiet", *extra)
    assert proc.returncode == 0, proc.stderr
    job = re.search(r"submitted Slurm job (\d+): 2 training process\(es\) on 1 node\(s\), CPUs", proc.stdout)
    assert job, proc.stdout
    assert f"f2f-cam runs show {name} --follow" in proc.stdout and f"scancel {job.group(1)}" in proc.stdout
    return job.group(1), Path(os.environ["F2F_CAM_DATA_DIR"]) / "runs" / name


def wait_done(job: str, run: Path, timeout: float = 240) -> dict:
    def ended():
        info = job_info(job)
        return info if info.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") else None

    try:
        info = wait_for(f"Slurm job {job} to end", ended, timeout)
    finally:
        for log in (run / "slurm").glob("job-*.out"):
            print(log.read_text(errors="replace")[-3000:])
    return info


def ckpt_hashes(run: Path) -> list[str]:
    import torch

    return torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["rank_G_sha1"]


def test_a_slurm_job_trains_two_ranks_and_installs_the_persona_once(slurm, clip):
    from f2f_cam.persona import PersonaStore

    job, run = submit(clip, "slurm1", "--epochs", "2")
    assert json.loads(run_cli("runs", "--json").stdout)[0]["slurm_job"] == job
    info = wait_done(job, run)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", info
    assert "slurm1" in PersonaStore().names()
    hashes = ckpt_hashes(run)
    assert len(hashes) == 2 and hashes[0] == hashes[1]  # DDP kept the two ranks' weights identical
    listed = {r["name"]: r for r in json.loads(run_cli("runs", "--json").stdout)}["slurm1"]
    assert listed["state"] == "finished" and listed["epoch"] == 2 and listed["world_size"] == 2
    assert listed["ranks_in_sync"] is True and listed["slurm_job"] == job and listed["samples"]
    shown = run_cli("runs", "show", "slurm1").stdout
    assert "slurm1: finished" in shown and "weights identical on every rank" in shown
    # Submitted again (or requeued) after it finished: nothing is trained or installed twice.
    installed = (PersonaStore().root / "slurm1" / "persona.json").stat().st_mtime_ns
    again = subprocess.run(["sbatch", "--parsable", "--wait", str(run / "slurm" / "train.sbatch")],
                           capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr
    log = (run / "slurm" / f"job-{again.stdout.strip()}.out").read_text()
    assert "has finished already" in log
    assert (PersonaStore().root / "slurm1" / "persona.json").stat().st_mtime_ns == installed


def test_usr1_saves_a_checkpoint_and_the_requeued_job_finishes(slurm, clip):
    from f2f_cam.persona import PersonaStore
    from trainers import runs

    job, run = submit(clip, "slurm2", "--epochs", "7")
    wait_for("the run to pass epoch 1", lambda: (runs.read_state(run).get("epoch") or 0) >= 2
             and runs.read_state(run).get("state") == "running", 180, every=0.1)
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    # (Right after the requeue its Reason reads "None" until the scheduler has looked at it.)
    info = wait_for("the job to be requeued", lambda: (lambda i: i if i.get("Restarts") == "1"
                                                       and i.get("JobState") == "PENDING"
                                                       and i.get("Reason") != "None" else None)(job_info(job)), 120)
    state = runs.read_state(run)
    assert state["state"] == "requeued" and state["stopped"] == "SIGUSR1", state
    stopped_at = state["step"]
    assert 0 < stopped_at and (run / "checkpoints" / "last.pt").exists()
    assert "slurm2" not in PersonaStore().names()
    # Slurm holds a requeued job for its credentials' lifetime (cred_expire: 10 s in
    # scripts/slurm_local.sh; 120 s by default), then starts it again.
    assert info["Reason"] == "BeginTime"
    info = wait_done(job, run)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", info
    log = (run / "slurm" / f"job-{job}.out").read_text()
    assert "requeueing job" in log and "restart 1" in log
    second = log[log.index("restart 1"):]  # the requeued job went on from the checkpoint
    assert "epoch 7:" in second and "epoch 1:" not in second and "epoch 2:" not in second
    state = runs.read_state(run)
    assert state["state"] == "finished" and state["slurm_restarts"] == 1 and state["epoch"] == 7
    assert state["step"] > stopped_at and "slurm2" in PersonaStore().names()
    hashes = ckpt_hashes(run)
    assert len(hashes) == 2 and hashes[0] == hashes[1]


def test_runs_show_follows_a_run_that_another_process_writes(tmp_path, monkeypatch, capsys):
    """`runs show --follow` prints each step as the writer (here a thread standing in
    for a compute node, through the same atomic writes) moves on, and stops at the end."""
    import threading

    from f2f_cam import cli_runs
    from f2f_cam.cli import main
    from trainers import runs

    run = runs.runs_root() / "far"
    runs.update(run, name="far", state="running", epoch=0, epochs=3, step=0, steps=30)
    monkeypatch.setattr(cli_runs, "WATCH_S", 0.05)

    def writer():
        for k in range(1, 4):
            time.sleep(0.3)
            runs.update(run, epoch=k, step=10 * k, val={"val_psnr": 20.0 + k, "val_ssim": 0.5, "val_l1": 0.1})
        time.sleep(0.3)
        runs.update(run, state="finished", persona="/p/far")

    t = threading.Thread(target=writer)
    t.start()
    assert main(["runs", "show", "far", "--follow"]) == 0
    t.join()
    out = capsys.readouterr().out
    assert "far: running" in out  # the first look, in full
    for k in range(1, 4):
        assert f"epoch {k}/3, step {10 * k}/30" in out and f"PSNR {20 + k}.00 dB" in out
    assert out.rstrip().splitlines()[-1].split(" ", 1)[1].startswith("finished")


def test_heartbeat_keeps_the_state_fresh(tmp_path):
    from trainers import runs

    steps = iter(range(100))
    runs.update(tmp_path, name="hb", state="running")
    first = runs.read_state(tmp_path)["updated"]
    with runs.Heartbeat(tmp_path, lambda: {"step": next(steps)}, every=0.05):
        time.sleep(0.4)
    state = runs.read_state(tmp_path)
    assert state["step"] >= 3 and state["updated"] > first and state["state"] == "running"


def test_scancel_saves_a_checkpoint_and_sbatch_again_resumes(slurm, clip):
    """`scancel JOBID` (SIGTERM to every task, SIGKILL after KillWait): a checkpoint,
    the run "stopped"; submitting the same script again continues it to the end."""
    from f2f_cam.persona import PersonaStore
    from trainers import runs

    job, run = submit(clip, "slurm3", "--epochs", "6")
    wait_for("the run to pass epoch 1", lambda: (runs.read_state(run).get("epoch") or 0) >= 2
             and runs.read_state(run).get("state") == "running", 180, every=0.1)
    subprocess.run(["scancel", job], check=True)
    info = wait_done(job, run)
    assert info["JobState"] == "CANCELLED", info
    state = wait_for("the run to say it stopped", lambda: (lambda s: s if s.get("state") == "stopped" else None)(
        runs.read_state(run)), 30)
    assert state["stopped"] == "SIGTERM" and state["step"] > 0 and (run / "checkpoints" / "last.pt").exists()
    assert not (run / "slurm" / "requeue").exists() and "slurm3" not in PersonaStore().names()
    listed = {r["name"]: r for r in json.loads(run_cli("runs", "--json").stdout)}["slurm3"]
    assert listed["state"] == "stopped"
    again = subprocess.run(["sbatch", "--parsable", "--wait", str(run / "slurm" / "train.sbatch")],
                           capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr
    log = (run / "slurm" / f"job-{again.stdout.strip()}.out").read_text()
    assert "epoch 6:" in log and "epoch 1:" not in log and "slurm3" in PersonaStore().names()
    assert runs.read_state(run)["state"] == "finished"


@pytest.mark.parametrize("squeue, state, detail", [
    ("echo RUNNING", "running", "Slurm job 41: RUNNING"),
    ("echo PENDING", "queued", "Slurm job 41: PENDING"),
    ("echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1", "stopped", "no longer in the queue"),
    ("echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2; exit 1", "running", "Slurm job 41"),
])
def test_a_run_on_slurm_reads_as_slurm_says(tmp_path, monkeypatch, squeue, state, detail):
    """The job's state comes from squeue; a controller that does not answer is not a
    stopped run (the heartbeat decides then)."""
    from trainers import runs

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text(f"#!/bin/sh\n{squeue}\n")
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    runs.update(tmp_path / "r", name="r", state="running", slurm_job="41", epoch=3)
    got = runs.summary("r", tmp_path / "r")
    assert (got["state"], detail in got["detail"]) == (state, True), got
