"""``f2f-cam train --slurm``: a training run as a Slurm batch job.

On the login node: the run folder's rules, the dataset built once into it (on shared
storage: every node reads it), a batch script written into ``RUN/slurm/train.sbatch``,
and ``sbatch``. In the job, ``srun`` starts one task per training process (per GPU; on
CPUs ``--tasks-per-node`` of them), and each runs ``f2f-cam train --slurm-job``, which
takes its rank from Slurm (``SLURM_PROCID``, ``SLURM_LOCALID``, ``SLURM_NTASKS``) and
joins PyTorch's process group with ``env://`` at the first node's address. No
``torchrun``: Slurm already starts a process per GPU on every node, and its signals
(the warning before the time limit, ``scancel``, a preemption) then reach the training
processes themselves, not an agent that would die of SIGUSR1 or restart them.

Time limits: ``--signal=USR1@S`` asks Slurm for SIGUSR1 ``S`` seconds before the limit;
the run saves a checkpoint, leaves a ``requeue`` mark, and the script requeues the
job, which resumes from that checkpoint. SIGTERM (``scancel``, a preemption) saves a
checkpoint and stops; Slurm itself requeues a preempted job. At the end rank 0
exports and installs the persona; a requeued job whose run has finished does nothing.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from f2f_cam.atomic import write_text
from f2f_cam.errors import UserError
from trainers.config import TrainConfig

SCRIPT = "train.sbatch"
SIGNAL_S = 120  # SIGUSR1 this long before the time limit: a step and a checkpoint fit
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


@dataclass(frozen=True)
class SlurmSpec:
    """What the job asks Slurm for."""

    nodes: int = 1
    gpus_per_node: int = 0  # 0: CPUs (gloo)
    tasks_per_node: int | None = None  # training processes per node (default: one per GPU, or 1)
    cpus_per_task: int | None = None  # None: the cluster's default
    time: str | None = None  # Slurm's --time: MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]
    partition: str | None = None
    account: str | None = None

    def __post_init__(self):
        for name in ("nodes", "tasks_per_node", "cpus_per_task"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"invalid --{name.replace('_', '-')} {value}: must be at least 1")
        if self.gpus_per_node < 0:
            raise UserError(f"invalid --gpus-per-node {self.gpus_per_node}: must be at least 0")
        if self.time is not None and time_seconds(self.time) is None:
            raise UserError(f"invalid --time {self.time!r}; give HH:MM:SS (or MM, MM:SS, D-HH:MM:SS) as sbatch takes it")
        for name in ("partition", "account"):
            value = getattr(self, name)
            if value is not None and not re.fullmatch(r"[A-Za-z0-9_.,:+-]+", value):
                raise UserError(f"invalid --{name} {value!r}: letters, digits and _ . , : + - only")

    @property
    def tasks(self) -> int:
        return self.tasks_per_node or self.gpus_per_node or 1

    @property
    def world(self) -> int:
        return self.nodes * self.tasks

    def signal_s(self) -> int:
        """Seconds before the limit for the warning: ``SIGNAL_S``, less for short jobs."""
        limit = time_seconds(self.time) if self.time else None
        return SIGNAL_S if limit is None else max(10, min(SIGNAL_S, limit // 4))


def time_seconds(text: str) -> int | None:
    """Slurm's --time formats in seconds (None: not one of them)."""
    m = _TIME.match(text.strip())
    if not m:
        return None
    days, a, b, c = (int(g) if g is not None else None for g in m.groups())
    if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        return days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    if c is not None:  # HH:MM:SS
        return a * 3600 + b * 60 + c
    return a * 60 + (b or 0)  # MM or MM:SS


def train_args(cfg: TrainConfig, device: str) -> list[str]:
    """``cfg`` as ``f2f-cam train`` options: every one written out, for the reader."""
    args = (["--size", cfg.size] + ([] if cfg.ngf is None else ["--ngf", cfg.ngf])
            + ([] if cfg.ndf is None else ["--ndf", cfg.ndf]))
    args += ["--norm", cfg.norm]  # (no --ngf/--ndf when not given: the job's own machine picks them)
    if cfg.epochs is not None:
        args += ["--epochs", cfg.epochs]
    if cfg.minutes is not None:
        args += ["--minutes", cfg.minutes]
    args += ["--batch-size", cfg.batch_size, "--lr", cfg.lr] + ([] if cfg.lr_d is None else ["--lr-d", cfg.lr_d])
    args += ["--gan-mode", cfg.gan_mode, "--num-d", cfg.num_D,
             "--lambda-feat", cfg.lambda_feat, "--lambda-parts", cfg.lambda_parts,
             "--lambda-face", cfg.lambda_face, "--lambda-parts-gan", cfg.lambda_parts_gan, "--lambda-grid", cfg.lambda_grid, "--blur-up", cfg.blur_up, "--resize-up", cfg.resize_up, "--ema", cfg.ema, "--decay-epochs", cfg.decay_epochs, "--decay-share",
             cfg.decay_share, "--jitter", cfg.jitter, "--recon-share", cfg.recon_share, "--save-every", cfg.save_every, "--device", device,
             "--precision", cfg.precision, "--workers", cfg.workers, "--seed", cfg.seed,
             "--student", cfg.student, "--student-minutes", cfg.student_minutes]
    args += [flag for flag, on in (("--no-dropout", not cfg.dropout), ("--no-augment", not cfg.augment),
                                   ("--sync-bn", cfg.sync_bn)) if on]
    if cfg.max_steps is not None:
        args += ["--max-steps", cfg.max_steps]
    if cfg.student_steps is not None:
        args += ["--student-steps", cfg.student_steps]
    return [str(a) for a in args]


def job_script(spec: SlurmSpec, run_dir: Path, name: str, cfg: TrainConfig, *, display_name: str | None = None,
               force: bool = False, python: str | None = None) -> str:
    """The batch script for the run in ``run_dir`` (its dataset already built)."""
    q = shlex.quote
    run_dir = Path(run_dir).resolve()
    device = "cuda" if spec.gpus_per_node else "cpu"
    backend = "nccl on GPUs" if spec.gpus_per_node else "gloo on CPUs"
    head = [
        "#!/bin/bash",
        f"# f2f-cam: training the persona '{name}', written by `f2f-cam train --slurm` on "
        f"{time.strftime('%Y-%m-%d %H:%M')}.",
        f"# {spec.world} training process(es): {spec.nodes} node(s) x {spec.tasks} task(s), {backend}.",
        "# Edit what you like; submit it again with `sbatch THIS_FILE`: it resumes from the",
        "# run's last checkpoint. Follow it: `f2f-cam runs show " + name + " --follow`.",
        "# Stop it: `scancel JOBID` (a checkpoint is saved first).",
        "#",
        "# One task per training process; each takes its rank from Slurm (SLURM_PROCID) and",
        "# meets the others at the first node (MASTER_ADDR, MASTER_PORT: PyTorch's env://).",
        f"#SBATCH --job-name=f2f-{name}",
        f"#SBATCH --nodes={spec.nodes}",
        f"#SBATCH --ntasks-per-node={spec.tasks}",
    ]
    if spec.cpus_per_task:
        head.append(f"#SBATCH --cpus-per-task={spec.cpus_per_task}")
    if spec.gpus_per_node:
        head.append(f"#SBATCH --gpus-per-node={spec.gpus_per_node}")
    for key in ("time", "partition", "account"):
        if getattr(spec, key):
            head.append(f"#SBATCH --{key}={getattr(spec, key)}")
    head += [
        f"#SBATCH --output={run_dir}/slurm/job-%j.out",
        "#SBATCH --open-mode=append",
        "#SBATCH --requeue",
        f"# SIGUSR1 {spec.signal_s()} s before the time limit: save a checkpoint, then requeue (below).",
        f"#SBATCH --signal=USR1@{spec.signal_s()}",
        "",
        "set -uo pipefail",
        f"export RUN={q(str(run_dir))}",
        f"PYTHON={q(python or sys.executable)}",
    ]
    head += [f"export {k}={q(v)}" for k, v in sorted(os.environ.items()) if k.startswith("F2F_CAM_")]
    cmd = ['"$PYTHON"', "-m", "f2f_cam", "train", "--name", name, "--dataset", '"$RUN/dataset"',
           "--workdir", '"$RUN"', "--slurm-job", "--quiet"]
    if display_name:
        cmd += ["--display-name", q(display_name)]
    if force:
        cmd.append("--force")
    opts = train_args(cfg, device)
    body = [
        'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))",
        "export MASTER_ADDR MASTER_PORT",
        "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}",
        'rm -f "$RUN/slurm/requeue"',
        'echo "job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NODELIST at $(date)"',
        "",
        "srun --kill-on-bad-exit=1 " + " ".join(cmd) + " \\",
        *[f"    {line} \\" for line in _pairs(opts)],
    ]
    body[-1] = body[-1][:-2]  # no continuation after the last option
    body += [
        "status=$?",
        'if [ -e "$RUN/slurm/requeue" ]; then',
        '    echo "checkpoint saved before the time limit; requeueing job $SLURM_JOB_ID"',
        '    scontrol requeue "$SLURM_JOB_ID"',
        "fi",
        "exit $status",
        "",
    ]
    return "\n".join(head + [""] + body)


def _pairs(opts: list[str]) -> list[str]:
    """Options one per line: a flag with its value, or a flag alone."""
    out, k = [], 0
    while k < len(opts):
        if k + 1 < len(opts) and not opts[k + 1].startswith("--"):
            out.append(f"{opts[k]} {shlex.quote(opts[k + 1])}")
            k += 2
        else:
            out.append(opts[k])
            k += 1
    return out


def write_script(run_dir: Path, text: str) -> Path:
    path = Path(run_dir) / "slurm" / SCRIPT
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text)
    path.chmod(0o755)
    return path


def submit(script: Path) -> str:
    """``sbatch`` the script (``submit_training`` has checked that there is one): the job id."""
    proc = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        why = next((line.strip() for line in proc.stderr.splitlines() if line.strip()), "no reason given")
        raise UserError(f"sbatch refused the job: {why.removeprefix('sbatch: error: ')}; "
                        f"edit {script} and submit it with `sbatch {script}`")
    job = proc.stdout.strip().split(";")[0]
    if not job.isdigit():
        raise UserError(f"sbatch printed no job id ({proc.stdout.strip()!r}); see `squeue --me`")
    return job


def slurm_rank_env() -> None:
    """In a ``--slurm-job`` task: the rank, local rank and world size from Slurm's
    variables, for ``trainers.distributed.init_distributed``."""
    for var, slurm in (("RANK", "SLURM_PROCID"), ("LOCAL_RANK", "SLURM_LOCALID"), ("WORLD_SIZE", "SLURM_NTASKS")):
        if slurm in os.environ:
            os.environ.setdefault(var, os.environ[slurm])


def submit_training(name: str, *, video: Path | None, dataset: Path | None, config: TrainConfig, spec: SlurmSpec,
                    workdir: Path | None = None, frames: int = 400, display_name: str | None = None,
                    resume: bool = False, force: bool = False, progress: bool = True,
                    dry_run: bool = False) -> tuple[Path, str | None]:
    """The login node's half of ``train --slurm``: run folder, dataset, script, ``sbatch``.
    Returns (the script, the job id; None with ``dry_run``)."""
    from f2f_cam import paths
    from f2f_cam.persona import PersonaStore
    from trainers import runs
    from trainers.recipe import check_start, ensure_dataset, prepare_run_dir

    check_start(name, video, dataset, force, PersonaStore())
    if not dry_run and not shutil.which("sbatch"):
        raise UserError("sbatch not found: --slurm submits with Slurm's sbatch, so run this on the cluster's "
                        "login node (or use --slurm-dry-run to write the script without submitting)")
    run_dir = (Path(workdir) if workdir else paths.data_dir() / "runs" / name).resolve()
    live, detail = runs.live_state(runs.read_state(run_dir))
    if live in ("running", "queued") and not dry_run:
        raise UserError(f"the run '{name}' in {run_dir} is {live} ({detail}); stop it first "
                        "(scancel JOBID), or pick another --name or --workdir")
    prepare_run_dir(run_dir, name, resume=resume, force=force)
    if dataset is None:  # built here, once, into the run folder: every node reads it there
        dataset = run_dir / "dataset"
        ensure_dataset(Path(video), dataset, frames=frames, size=config.size, seed=config.seed, progress=progress)
    elif Path(dataset).resolve() != run_dir / "dataset":
        _link_dataset(Path(dataset).resolve(), run_dir / "dataset")
    runs.register(name, run_dir)
    script = write_script(run_dir, job_script(spec, run_dir, name, config, display_name=display_name,
                                              force=force))
    if dry_run:
        return script, None
    job = submit(script)
    runs.update(run_dir, name=name, state="queued", slurm_job=job, epochs=config.epochs, world_size=spec.world,
                log=str(run_dir / "slurm" / f"job-{job}.out"), error=None)
    return script, job


def _link_dataset(src: Path, dst: Path) -> None:
    """A ``--dataset`` built elsewhere, seen from the run folder (the job reads RUN/dataset)."""
    if dst.is_symlink() or dst.exists():
        if dst.resolve() == src:
            return
        raise UserError(f"{dst} exists and is another dataset; remove it, or give another --workdir")
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src, target_is_directory=True)
