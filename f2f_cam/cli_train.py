"""``f2f-cam dataset | train | export``: building personas.

Only click is imported here at module level: ``trainers`` (and torch) load inside the
commands, so the daemon and ``f2f-cam --help`` never pay for the training code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


def _size_option(f):
    return click.option("--size", type=int, default=512, show_default=True,
                        help="Persona image size: 64, 128, 256 or 512 px.")(f)


def _slurm_options(f):
    opts = [
        click.option("--slurm", is_flag=True, help="Build the dataset here, then train as a Slurm batch job "
                     "(sbatch); prints the job id and how to follow it."),
        click.option("--slurm-dry-run", is_flag=True, help="Like --slurm, but only write and print the job "
                     "script (RUN/slurm/train.sbatch)."),
        click.option("--nodes", type=int, default=1, show_default=True, help="With --slurm: nodes."),
        click.option("--gpus-per-node", type=int, default=0, show_default=True,
                     help="With --slurm: GPUs per node, one training process each (0: CPUs, gloo)."),
        click.option("--tasks-per-node", type=int, default=None,
                     help="With --slurm: training processes per node [default: one per GPU, or 1]."),
        click.option("--cpus-per-task", type=int, default=None, help="With --slurm: CPUs per process."),
        click.option("--time", "time_limit", default=None, help="With --slurm: time limit, HH:MM:SS; a "
                     "checkpoint is saved before it and the job requeued."),
        click.option("--partition", default=None, help="With --slurm: partition."),
        click.option("--account", default=None, help="With --slurm: account to charge."),
        click.option("--slurm-job", is_flag=True, hidden=True),  # the job's own command (trainers.slurm)
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


@click.command()
@click.argument("video", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Dataset folder to write.")
@click.option("--frames", type=click.IntRange(min=2), default=400, show_default=True,
              help="Frames to sample, spread over the whole video.")
@_size_option
@click.option("--val-fraction", type=float, default=0.1, show_default=True, help="Share held out for validation.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def dataset(video, output, frames, size, val_fraction, seed, quiet):
    """Build (sketch, photo) training pairs from a video of one person."""
    from trainers.dataset import build_dataset

    meta = build_dataset(video, output, frames=frames, size=size, val_fraction=val_fraction,
                         seed=seed, progress=not quiet)
    click.echo(f"wrote {output}: {meta['train']} train + {meta['val']} val pairs from "
               f"{meta['frames_kept']} of {meta['frames_sampled']} sampled frames "
               f"(skipped: {meta['skipped']['no face']} without a face, "
               f"{meta['skipped']['several faces']} with several)")


@click.command()
@click.argument("video", required=False, type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Persona name (lowercase letters, digits, - and _).")
@click.option("--display-name", default=None, help="Name shown in menus (default: --name).")
@click.option("--dataset", "dataset_dir", type=click.Path(path_type=Path), default=None,
              help="Use this dataset folder (from `f2f-cam dataset`) instead of VIDEO.")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Run folder: dataset, checkpoints, samples, metrics (default: DATA_DIR/runs/NAME).")
@click.option("--frames", type=click.IntRange(min=2), default=400, show_default=True, help="Frames to sample from VIDEO.")
@_size_option
# Ranges and choices of the training options are checked by TrainConfig itself, so the
# command line, tests and library calls get the same one-line error.
@click.option("--ngf", type=int, default=None,
              help="Generator width (64: the paper's).  [default: 16; 8 where training runs fp32 on a CPU]")
@click.option("--ndf", type=int, default=None,
              help="Discriminator width (64: the paper's).  [default: 32; 16 where training runs fp32 on a CPU]")
@click.option("--norm", default="instance", show_default=True,
              help="Normalisation: instance (per image) or batch (pix2pix's).")
@click.option("--no-dropout", is_flag=True, help="No dropout in the generator's decoder.")
@click.option("--epochs", type=int, default=None, help="Passes over the data (the old max_epochs) [default: 30, or none with --minutes].")
@click.option("--minutes", type=float, default=None, help="Time budget: stop cleanly at it and export.")
@click.option("--batch-size", type=int, default=4, show_default=True, help="Per process.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="The generator's Adam learning rate.")
@click.option("--lr-d", type=float, default=2e-4, show_default=True, help="The discriminator's Adam learning rate.")
@click.option("--gan-mode", default="vanilla", show_default=True, help="vanilla | lsgan")
@click.option("--num-d", "num_D", type=int, default=1, show_default=True,
              help="Discriminator scales (2+: pix2pixHD's multi-scale discriminator).")
@click.option("--lambda-feat", type=float, default=0.0, show_default=True,
              help="Weight of pix2pixHD's discriminator feature matching (0: off; 10 in the paper).")
@click.option("--lambda-parts", type=float, default=0.5, show_default=True,
              help="Extra L1 on the eyes and mouth, as a share of the L1 weight (0: off): clean, placed eyes.")
@click.option("--lambda-face", type=float, default=1.0, show_default=True,
              help="Weight of a second discriminator's GAN loss on the face's square alone (0: off).")
@click.option("--lambda-parts-gan", type=float, default=0.0, show_default=True,
              help="Weight of a third discriminator's GAN loss on each eye's and the mouth's square (0: off).")
@click.option("--lambda-grid", type=float, default=0.0, show_default=True,
              help="Extra L1 on the output's checkerboard (its sub-pixel phases' local means), a share of the L1 weight (0: off).")
@click.option("--blur-up", type=int, default=0, show_default=True,
              help="Follow the generator's last N upsamplings by a fixed low-pass (against their checkerboard; 0: none).")
@click.option("--resize-up", type=int, default=2, show_default=True,
              help="Make the generator's last N upsamplings resize-convolutions (no checkerboard, no run-time cost; 0: none).")
@click.option("--ema", type=float, default=0.995, show_default=True,
              help="Validate and export a moving average of the generator's weights with this decay a step (e.g. 0.995; 0: the last weights).")
@click.option("--decay-epochs", type=int, default=0, show_default=True, help="Linear lr decay over the last N epochs.")
@click.option("--decay-share", type=float, default=0.0, show_default=True,
              help="With --minutes: linear lr decay to 0 over this last share of the time budget (0: constant lr).")
@click.option("--save-every", type=int, default=500, show_default=True, help="Steps between checkpoints (the old save_freq).")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N | mps")
@click.option("--precision", default="auto", show_default=True, help="auto | fp32 | bf16 | fp16")
@click.option("--workers", type=int, default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--sync-bn", is_flag=True, help="SyncBatchNorm across torchrun processes.")
@click.option("--no-augment", is_flag=True, help="No random rotation/scale/shift of the pairs.")
@click.option("--jitter", type=float, default=0.0, show_default=True,
              help="Landmark noise on the training sketches (px at 256 px; 0: off).")
@click.option("--recon-share", type=float, default=0.0, show_default=True,
              help="Share of training sketches drawn from the expression model's redrawing of each frame "
                   "(what the runtime draws; 0: the real landmarks only).")
@click.option("--student", default="auto", show_default=True,
              help="auto | yes | no: also distil a real-time student (auto: when the generator is too slow "
                   "for 30 fps on this CPU).")
@click.option("--student-minutes", type=float, default=8.0, show_default=True,
              help="Time the real-time student trains, after the generator.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-steps", type=int, default=None, hidden=True)
@click.option("--student-steps", type=int, default=None, hidden=True)
@click.option("--resume", is_flag=True, help="Continue the run in --workdir from its last checkpoint.")
@click.option("--force", is_flag=True, help="Replace an existing persona / start the run over.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_slurm_options
def train(video, name, display_name, dataset_dir, workdir, frames, size, ngf, ndf, norm, no_dropout, epochs, minutes,
          batch_size, lr, lr_d, gan_mode, num_D, lambda_feat, lambda_parts, lambda_face, lambda_parts_gan, lambda_grid, blur_up, resize_up, ema, decay_epochs, decay_share, save_every, device,
          precision, workers, sync_bn, no_augment, jitter, recon_share, student, student_minutes, seed, max_steps, student_steps, resume, force,
          quiet, **slurm):
    """Train a persona from one video: dataset -> pix2pix -> export -> install.

    Resumable (--resume), stops cleanly at a time budget (--minutes), runs under
    `torchrun --nproc-per-node N -m f2f_cam train ...` for DistributedDataParallel,
    and as a Slurm job with --slurm (the dataset is built here first).
    """
    from trainers.config import TrainConfig

    cfg = TrainConfig(size=size, ngf=ngf, ndf=ndf, norm=norm, dropout=not no_dropout,
                      epochs=epochs if epochs is not None or minutes is not None else 30,
                      minutes=minutes, batch_size=batch_size, lr=lr, lr_d=lr_d, gan_mode=gan_mode, num_D=num_D,
                      lambda_feat=lambda_feat, lambda_parts=lambda_parts, lambda_face=lambda_face, lambda_parts_gan=lambda_parts_gan, lambda_grid=lambda_grid, blur_up=blur_up, resize_up=resize_up, ema=ema, decay_epochs=decay_epochs, decay_share=decay_share,
                      save_every=save_every, device=device,
                      precision=precision, workers=workers, sync_bn=sync_bn, augment=not no_augment,
                      jitter=jitter, recon_share=recon_share, seed=seed, max_steps=max_steps, student=student,
                      student_minutes=student_minutes, student_steps=student_steps)
    if slurm["slurm"] or slurm["slurm_dry_run"]:
        return _submit(name, video, dataset_dir, cfg, workdir, frames, display_name, resume, force, quiet, slurm)
    if slurm["slurm_job"] and _start_slurm_job(name, workdir):
        return
    from trainers.recipe import train_persona

    r = train_persona(name, video=video, dataset=dataset_dir, config=cfg, workdir=workdir, frames=frames,
                      display_name=display_name, resume=resume, force=force, progress=not quiet,
                      slurm_job=slurm["slurm_job"])
    if r.rank != 0:
        return
    if r.interrupted and slurm["slurm_job"]:
        requeue = (r.run_dir / "slurm" / "requeue").exists()
        click.echo(f"checkpoint saved in {r.checkpoint.parent} at step {r.steps}; " + (
            "the job script requeues the job, which resumes from it" if requeue else
            f"stopped; `sbatch {r.run_dir / 'slurm' / 'train.sbatch'}` resumes it"), err=True)
        raise SystemExit(0 if requeue else 130)
    if r.interrupted:
        args = sys.argv[1:] + ([] if "--resume" in sys.argv else ["--resume"])
        click.echo(f"interrupted; checkpoint saved in {r.checkpoint.parent}. Resume with:\n  "
                   f"{' '.join(['f2f-cam', *args])}", err=True)
        raise SystemExit(130)
    nan = float("nan")
    click.echo(
        f"trained {r.epochs} epochs ({r.steps} steps, {r.minutes:.1f} min on {r.device}, {r.precision}; "
        f"stopped: {r.stopped}); validation L1 {_or(r.val_l1, nan):.4f}, PSNR {_or(r.val_psnr, nan):.2f} dB, "
        f"SSIM {_or(r.val_ssim, nan):.3f}\n"
        f"persona '{name}' installed at {r.persona}\n"
        f"samples and metrics: {r.run_dir}\n"
        f"use it: f2f-cam video IN.mp4 -o OUT.mp4 --persona {name}   or   f2f-cam run --persona {name}"
    )
    if r.student is not None:
        s = r.student
        click.echo(f"real-time student: {s['student_ms']:.0f} ms a frame on one core here against the generator's "
                   f"{s['generator_ms']:.0f} ms ({s['steps']} steps, {s['seconds'] / 60:.1f} min); on the held-out "
                   f"frames {s.get('psnr_vs_generator', float('nan')):.1f} dB from the generator's output; "
                   "`f2f-cam run` uses it where the generator cannot keep 30 fps")
    if r.verdict is not None:
        click.echo(r.verdict.lines())


def _submit(name, video, dataset_dir, cfg, workdir, frames, display_name, resume, force, quiet, slurm) -> None:
    from trainers.slurm import SlurmSpec, submit_training

    spec = SlurmSpec(nodes=slurm["nodes"], gpus_per_node=slurm["gpus_per_node"],
                     tasks_per_node=slurm["tasks_per_node"], cpus_per_task=slurm["cpus_per_task"],
                     time=slurm["time_limit"], partition=slurm["partition"], account=slurm["account"])
    dry = slurm["slurm_dry_run"]
    script, job = submit_training(name, video=video, dataset=dataset_dir, config=cfg, spec=spec, workdir=workdir,
                                  frames=frames, display_name=display_name, resume=resume, force=force,
                                  progress=not quiet, dry_run=dry)
    if dry:
        click.echo(script.read_text(encoding="utf-8"))
        click.echo(f"wrote {script} (not submitted); submit it with: sbatch {script}", err=True)
        return
    kind = f"{spec.gpus_per_node} GPU(s) per node" if spec.gpus_per_node else "CPUs"
    click.echo(f"submitted Slurm job {job}: {spec.world} training process(es) on {spec.nodes} node(s), {kind}\n"
               f"script: {script}\n"
               f"follow it: f2f-cam runs show {name} --follow   (log: {script.parent}/job-{job}.out)\n"
               f"stop it:   scancel {job}   (a checkpoint is saved; `sbatch {script}` resumes it)")


def _start_slurm_job(name, workdir) -> bool:
    """A ``--slurm-job`` task's start: its rank from Slurm, early signals kept for the
    training loop. True when the run has finished already (a requeued or resubmitted
    job: the persona is installed, nothing to do)."""
    from trainers import runs
    from trainers.slurm import slurm_rank_env

    from trainers.train import CtrlC

    slurm_rank_env()
    CtrlC.catch_early()
    state = runs.read_state(workdir) if workdir else {}
    if state.get("state") == "finished":
        click.echo(f"the run '{name}' has finished already: persona at {state.get('persona')}; nothing to do")
        return True
    return False


def _or(value, default):
    return default if value is None else value


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Persona name.")
@click.option("--display-name", default=None)
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write NAME.f2f here instead of installing it.")
@click.option("--force", is_flag=True, help="Replace an installed persona of the same name.")
def export(checkpoint, name, display_name, output, force):
    """Turn a training checkpoint into a persona (the old reduce + freeze)."""
    from trainers.export import export_checkpoint

    out = export_checkpoint(checkpoint, name, display_name=display_name, out_file=output, force=force)
    if output is not None:
        click.echo(f"wrote {out}; install it with `f2f-cam personas import {out}`")
    else:
        click.echo(f"persona '{name}' installed at {out.path}")
