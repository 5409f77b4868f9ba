"""``train_persona``: one video in, one installed persona out.

The use case behind ``f2f-cam train``, as a function the CLI and tests both call:
run-folder rules, dataset (built, or reused when it matches), training (resumable,
under torchrun too), export and install. Rank 0 alone builds the dataset and
installs the persona; every rank trains.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from f2f_cam import paths
from f2f_cam.atomic import write_text
from f2f_cam.errors import UserError, one_line
from f2f_cam.persona import PersonaStore, check_name
from trainers import runs
from trainers.config import TrainConfig
from trainers.dataset import DATASET_FORMAT, DATASET_JSON, build_dataset, load_dataset, sha256_file
from trainers.distributed import barrier, finish_distributed, init_distributed
from trainers.export import export_checkpoint
from trainers.step import tune_malloc
from trainers.train import train
from trainers.verdict import Verdict, check_persona

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PersonaResult:
    """What a training run did: the CLI prints it."""

    stopped: str  # "done" | "time budget" | "max steps" | "interrupted"
    epochs: int
    steps: int
    seconds: float
    device: str
    precision: str
    run_dir: Path  # dataset, checkpoints, samples, metrics
    checkpoint: Path
    persona: Path | None  # the installed persona's folder (None: interrupted, or not rank 0)
    val_l1: float | None = None
    val_psnr: float | None = None
    val_ssim: float | None = None
    rank: int = 0
    world_size: int = 1
    verdict: Verdict | None = None  # the persona's figures, verdict and advice (trainers.verdict)
    student: dict | None = None  # the real-time student's facts, when one was distilled (trainers.distill)

    @property
    def minutes(self) -> float:
        return self.seconds / 60

    @property
    def interrupted(self) -> bool:
        return self.stopped == "interrupted"


def train_persona(name: str, *, video: Path | None = None, dataset: Path | None = None,
                  config: TrainConfig = TrainConfig(), workdir: Path | None = None, frames: int = 400,
                  display_name: str | None = None, resume: bool = False, force: bool = False,
                  progress: bool = True, store: PersonaStore | None = None, check: bool = True,
                  slurm_job: bool = False) -> PersonaResult:
    """Train the persona ``name`` from a ``video`` (or a ``dataset`` folder) and install it.

    ``workdir``: the run folder (default DATA_DIR/runs/NAME). ``resume`` continues the
    run there from its last checkpoint; ``force`` starts it over and replaces an
    installed persona of the same name. An interrupted run (Ctrl-C) saves a checkpoint
    and returns with ``stopped == "interrupted"`` and no persona. ``check``: measure the
    installed persona and judge it (``trainers.verdict``; seconds), into ``verdict`` and
    the run folder's quality.json. ``slurm_job``: this is the job ``train --slurm``
    submitted (``trainers.slurm``): it resumes when the run has a checkpoint, and a
    stop at Slurm's warning (SIGUSR1) asks the job script to requeue the job.
    """
    store = store or PersonaStore()
    check_start(name, video, dataset, force, store)
    run_dir = Path(workdir) if workdir else paths.data_dir() / "runs" / name
    if slurm_job:  # the job of `train --slurm`: a requeued one continues where the last stopped
        resume = (run_dir / "checkpoints" / "last.pt").exists()
    dd = init_distributed(config.device)  # once per process: train() takes it from here
    facts, meta = _train_run(name, video, dataset, config, run_dir, frames, resume, force, progress, dd)
    persona = verdict = None
    if dd.main and facts["stopped"] == "interrupted":
        requeue = slurm_job and facts.get("signal") == "SIGUSR1"
        if requeue:  # the job script sees it and sends the job back to the queue
            write_text(run_dir / "slurm" / "requeue", os.environ.get("SLURM_JOB_ID", "") + "\n")
        runs.update(run_dir, state="requeued" if requeue else "stopped", stopped=facts.get("signal"))
    elif dd.main:
        facts["student"] = teach_student(Path(facts["checkpoint"]), meta, config, progress)
        persona = export_checkpoint(facts["checkpoint"], name, display_name=display_name, force=force,
                                    result=facts, store=store).path
        hashes = facts.get("rank_G_sha1") or []
        runs.update(run_dir, state="finished", stopped=facts["stopped"], persona=str(persona),
                    ranks_in_sync=len(set(hashes)) == 1 if hashes else None)
        if check:
            verdict = check_persona(persona, meta, stopped=facts["stopped"], out_file=run_dir / "quality.json",
                                    resume_command=f"`{resume_command(name, video, dataset, workdir)}` "
                                                   "continues this run")
    return PersonaResult(
        stopped=facts["stopped"], epochs=facts["epochs"], steps=facts["steps"], seconds=facts["seconds"],
        device=facts["device"], precision=facts["precision"], run_dir=run_dir,
        checkpoint=Path(facts["checkpoint"]), persona=persona, val_l1=facts.get("val_l1"),
        val_psnr=facts.get("val_psnr"), val_ssim=facts.get("val_ssim"), rank=dd.rank, world_size=dd.world,
        verdict=verdict, student=facts.get("student"))


def resume_command(name: str, video: Path | None, dataset: Path | None, workdir: Path | None) -> str:
    """The command that continues this run for another 30 minutes: its video or dataset,
    and its run folder where that is not the default one."""
    source = shlex.quote(str(video)) if video is not None else "VIDEO"
    if dataset is not None:
        source = f"--dataset {shlex.quote(str(dataset))}"
    where = f" --workdir {shlex.quote(str(workdir))}" if workdir else ""
    return f"f2f-cam train {source} --name {name}{where} --resume --force --minutes 30"


def teach_student(ckpt_path: Path, meta: dict, config: TrainConfig, progress: bool) -> dict | None:
    """Distil the checkpoint's generator into a real-time student (``trainers.distill``)
    when ``config.student`` says so ("auto": when it takes more than 30 fps allows on
    this CPU), saved beside the checkpoint for the export; its facts, else None. Ctrl-C
    stops the student: the persona is exported without one (the generator is whole)."""
    from trainers.checkpoint import build_generator_from_checkpoint, load_checkpoint
    from trainers.distill import REAL_TIME_MS, STUDENT_FILE, distil, generator_ms, save_student
    from trainers.train import CtrlC

    if config.student == "no":  # and none from an earlier try on this checkpoint goes in either
        (ckpt_path.parent / STUDENT_FILE).unlink(missing_ok=True)
        return None
    ckpt = load_checkpoint(ckpt_path)
    teacher = build_generator_from_checkpoint(ckpt)
    ms = generator_ms(teacher, config.size)
    if config.student == "auto" and ms <= REAL_TIME_MS:
        log.info("the generator takes %.1f ms a frame on this CPU: real time without a student", ms)
        return None
    log.warning("the generator takes %.0f ms a frame on one core of this CPU, more than 30 fps allows: "
                "distilling a real-time student (%g more minutes)", ms, config.student_minutes)
    with CtrlC() as ctrl_c:
        student, facts = distil(teacher, meta, minutes=config.student_minutes, seed=config.seed,
                                max_steps=config.student_steps, progress=progress,
                                should_stop=lambda: ctrl_c.pressed)
    if ctrl_c.pressed:
        log.warning("real-time student interrupted: the persona is installed without one (it runs its full "
                    "generator); `f2f-cam train ... --force` trains both again")
        return None
    facts.update(generator_ms=round(ms, 1), student_ms=round(generator_ms(student, config.size), 1))
    save_student(ckpt_path.parent / STUDENT_FILE, student, facts, ckpt["step"])
    return facts


def check_start(name: str, video: Path | None, dataset: Path | None, force: bool, store: PersonaStore) -> None:
    """What a run needs before it does anything: a good name, a VIDEO or a dataset,
    and the name free (or ``force``)."""
    check_name(name)
    if (video is None) == (dataset is None):
        raise UserError("give a VIDEO or --dataset DIR (one of the two)")
    if not force and name in store.names():
        raise UserError(f"persona '{name}' already exists; add --force to replace it, or pick another --name")


def _train_run(name, video, dataset, config, run_dir, frames, resume, force, progress, dd) -> tuple[dict, dict]:
    """The run folder, the dataset (rank 0 builds or reuses it, the others wait) and
    the training: (train()'s facts, the dataset's meta)."""
    if dd.main:
        prepare_run_dir(run_dir, name, resume=resume, force=force)
    if dataset is None:  # a video that gives no dataset leaves no run behind
        dataset = run_dir / "dataset"
        if dd.main:
            ensure_dataset(Path(video), dataset, frames=frames, size=config.size, seed=config.seed,
                           progress=progress)
    barrier(dd)
    meta = load_dataset(dataset)
    if dd.main:
        runs.register(name, run_dir)
        runs.update(run_dir, name=name, state="starting", error=None)
    try:  # from here on the run folder is this run's: its state says how it ended
        tune_malloc()
        facts = train(config, meta, run_dir, resume=resume, progress=progress, dd=dd)
        finish_distributed()
    except BaseException as e:
        if dd.main:
            runs.update(run_dir, name=name, state="failed" if isinstance(e, Exception) else "stopped",
                        error=one_line(e))
        raise
    return facts, meta


def prepare_run_dir(run_dir: Path, name: str, *, resume: bool, force: bool) -> None:
    """The run-folder rules: an earlier run continues only with ``resume`` and starts
    over only with ``force``; ``resume`` needs a checkpoint to resume from."""
    ckpt_dir = run_dir / "checkpoints"
    if (ckpt_dir / "last.pt").exists() and not resume:
        if not force:
            raise UserError(f"a training run for '{name}' exists in {run_dir}; add --resume to continue it "
                            "or --force to start over")
        shutil.rmtree(ckpt_dir)
    if resume and not (ckpt_dir / "last.pt").exists():
        raise UserError(f"nothing to resume: no checkpoint in {ckpt_dir}")


def ensure_dataset(video: Path, folder: Path, *, frames: int, size: int, seed: int, progress: bool) -> bool:
    """Build the dataset of ``video`` in ``folder``, unless the one there was built from
    the same video at the same size and seed from no more frames, in this format (an
    older one lacks the expression scores: it is rebuilt). Returns whether it reused it."""
    if not video.exists():
        raise UserError(f"no such file: {video}")
    if (folder / DATASET_JSON).exists():
        try:
            old = json.loads((folder / DATASET_JSON).read_text(encoding="utf-8"))
        except ValueError:
            old = {}  # unreadable: build it again
        if (old.get("format") == DATASET_FORMAT and old.get("video_sha256") == sha256_file(video)
                and old.get("image_size") == size
                and old.get("seed") == seed and old.get("frames_sampled", 0) <= frames):
            log.warning("reusing the dataset in %s", folder)
            return True
    build_dataset(video, folder, frames=frames, size=size, seed=seed, progress=progress)
    return False
