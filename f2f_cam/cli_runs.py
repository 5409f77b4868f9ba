"""``f2f-cam runs``: training runs, here or on a cluster, and how far each has got.

Reads each run's ``run.json`` (``trainers.runs``), so it works from any machine that
sees the run folder (a cluster's login node, while a compute node writes it). Imports
no torch.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from f2f_cam.errors import UserError

WATCH_S = 5.0  # --follow: how often to look again


def _fmt_val(val: dict) -> str:
    if not val:
        return "-"
    return (f"PSNR {val.get('val_psnr', float('nan')):.2f} dB, SSIM {val.get('val_ssim', float('nan')):.3f}, "
            f"L1 {val.get('val_l1', float('nan')):.4f}")


def _where(s: dict) -> str:
    """The state as a user reads it: "running on Slurm job 12", "stopped at epoch 3"."""
    state, epoch = s["state"], s.get("epoch")
    if state == "running" and s.get("slurm_job"):
        return f"running on Slurm job {s['slurm_job']}"
    if state == "queued" and s.get("slurm_job"):
        return f"queued as Slurm job {s['slurm_job']}"
    if state in ("stopped", "requeued", "failed") and epoch is not None:
        return f"{state} at epoch {epoch}"
    return state


def _progress(s: dict) -> str:
    epoch, epochs, step, steps = s.get("epoch"), s.get("epochs"), s.get("step"), s.get("steps")
    parts = []
    if epoch is not None:
        parts.append(f"epoch {epoch}" + (f"/{epochs}" if epochs else ""))
    if step is not None:
        parts.append(f"step {step}" + (f"/{steps} ({100 * step / steps:.0f} %)" if steps else ""))
    return ", ".join(parts) or "-"


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: one object per run.")
@click.pass_context
def runs(ctx, as_json):
    """Training runs: state (running on Slurm job N / finished / stopped at epoch E),
    last validation figures, where the samples are."""
    if ctx.invoked_subcommand is not None:
        return
    from trainers.runs import run_dirs, summary

    items = [summary(name, folder) for name, folder in run_dirs().items()]
    if as_json:
        click.echo(json.dumps(items, indent=1))
        return
    if not items:
        click.echo("no training runs yet; start one with `f2f-cam train VIDEO --name NAME` (add --slurm on a cluster)")
        return
    for s in items:
        click.echo(f"{s['name']}: {_where(s)}; {_progress(s)}; val {_fmt_val(s['val'])}")
        click.echo(f"    {s['samples'] or s['run_dir']}")


@runs.command()
@click.argument("name")
@click.option("--follow", is_flag=True, help="Keep printing progress until the run stops or finishes.")
@click.option("--json", "as_json", is_flag=True, help="The run's state as JSON.")
def show(name, follow, as_json):
    """The progress of one run, also while another machine writes it."""
    from trainers.runs import run_dirs, summary

    found = run_dirs()
    if name not in found:
        known = ", ".join(found) or "none yet"
        raise UserError(f"no training run named '{name}' (runs: {known}); see `f2f-cam runs`")
    last = None
    while True:
        s = summary(name, found[name])
        if as_json:
            click.echo(json.dumps(s, indent=1))
        elif follow and last is not None:
            if (s["state"], s.get("step"), s.get("epoch")) != last:
                click.echo(f"{time.strftime('%H:%M:%S')} {_where(s)}; {_progress(s)}; val {_fmt_val(s['val'])}")
        else:
            _print_run(s)
        last = (s["state"], s.get("step"), s.get("epoch"))
        if not follow or s["state"] not in ("running", "queued", "requeued", "starting"):
            return
        time.sleep(WATCH_S)


def _print_run(s: dict) -> None:
    from trainers.runs import last_metrics

    detail = f" ({s['detail']})" if s.get("detail") else ""
    click.echo(f"{s['name']}: {_where(s)}{detail}")
    click.echo(f"  progress:  {_progress(s)}" + (f", {s['world_size']} processes" if s.get("world_size") else ""))
    if s.get("ranks_in_sync") is not None:
        click.echo(f"  ranks:     {'weights identical on every rank' if s['ranks_in_sync'] else 'WEIGHTS DIFFER'}")
    rows = last_metrics(Path(s["run_dir"]), 5)
    for row in rows:
        click.echo(f"  epoch {row.get('epoch', '?'):>4}: val PSNR {float(row.get('val_psnr', 'nan')):.2f} dB, "
                   f"SSIM {float(row.get('val_ssim', 'nan')):.3f}, L1 {float(row.get('val_l1', 'nan')):.4f}")
    if s.get("samples"):
        click.echo(f"  samples:   {s['samples']}")
    if s.get("persona"):
        click.echo(f"  persona:   {s['persona']}")
    click.echo(f"  folder:    {s['run_dir']}")
    if s.get("log"):
        click.echo(f"  log:       {s['log']}")
        try:
            tail = Path(s["log"]).read_text(encoding="utf-8", errors="replace").splitlines()[-3:]
        except OSError:
            tail = []
        for line in tail:
            click.echo(f"    | {line[-160:]}")
