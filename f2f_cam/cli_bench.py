"""``f2f-cam bench``: speed of the runtime pipeline, of training (``--train``), or the
quality of a persona's output (``--quality``).

Only click at module level: torch, mediapipe and ``trainers`` load inside the command.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from f2f_cam.errors import UserError


@click.command()
@click.option("--train", "train_bench", is_flag=True, help="Training images/s against the reference step.")
@click.option("--quality", "quality_bench", is_flag=True,
              help="Quality of a persona's output per retarget mode (expression, identity, sharpness, ...).")
@click.option("--persona", default=None,
              help="Runtime, quality: persona to measure (default: your first, else a bundled one).")
@click.option("--video", type=click.Path(path_type=Path), default=None,
              help="Runtime: face clip to run (default: a generated 640x480 astronaut clip).")
@click.option("--precision", default="auto", show_default=True, help="Runtime generator: auto | fp32 | bf16")
@click.option("--size", type=int, default=256, show_default=True, help="Training: image size.")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True, help="Training: batch size.")
@click.option("--ngf", "ngfs", type=click.IntRange(min=1), multiple=True,
              help="Training: generator widths [default: 64 and 32].")
@click.option("--steps", type=click.IntRange(min=1), default=8, show_default=True, help="Training: timed steps per setting (median).")
@click.option("--driver", "drivers", type=click.Path(path_type=Path), multiple=True,
              help="Quality: a face clip to drive the persona with (repeatable) [default: generated ones].")
@click.option("--reference", type=click.Path(path_type=Path), default=None,
              help="Quality: a video of the persona's own face [default: its training video or dataset].")
@click.option("--mode", "modes", multiple=True,
              help="Quality: retarget mode to measure (repeatable) [default: every mode].")
@click.option("--frames", type=click.IntRange(min=3), default=None,
              help="Runtime: frames to run, the clip looped [default: 300]. Quality: frames per driver "
                   "(from its start), and of the reference (spread over it) [default: 105].")
@click.option("--no-compile", is_flag=True, help="Runtime: the generator uncompiled (eager), as without a compiler.")
@click.option("--student", default="auto", show_default=True,
              help="Runtime, quality: a persona's real-time student: auto (where its generator is too slow "
                   "here) | always | never.")
@click.option("--json", "as_json", is_flag=True)
def bench(train_bench, quality_bench, persona, video, precision, size, batch_size, ngfs, steps,
          drivers, reference, modes, frames, no_compile, student, as_json):
    """Measure speed: the runtime pipeline (default) or training (--train); or the
    quality of a persona's output (--quality)."""
    from f2f_cam.config import PipelineConfig

    cfg = PipelineConfig(persona=persona, precision=precision, student=student)  # checks the options
    if train_bench and quality_bench:
        raise UserError("--train and --quality measure different things; give one of them")
    if quality_bench:
        _quality(cfg, drivers, reference, modes, frames or 105, as_json)
        return
    if train_bench:
        from trainers.bench import bench_training, format_table
        from trainers.networks import SIZES

        if size not in SIZES:
            raise UserError(f"--size {size}: the U-Net is built for {', '.join(map(str, SIZES))} px")

        rows = bench_training(size=size, batch_size=batch_size, ngfs=ngfs or (64, 32), steps=steps,
                              progress=not as_json)
        click.echo(json.dumps(rows, indent=2) if as_json else format_table(rows))
        return
    import tempfile

    from f2f_cam.bench import bench_pipeline, bench_runtime, format_pipeline
    from f2f_cam.pipeline import resolve_persona

    p = resolve_persona(cfg.persona)
    if p is None:
        raise UserError("no persona to measure; train one with `f2f-cam train` or import one")
    with tempfile.TemporaryDirectory() as tmp:
        if video is None:
            import importlib.util

            from trainers import synth

            if importlib.util.find_spec("skimage") is None:
                raise UserError("give --video FILE (the generated clip needs scikit-image: "
                                "pip install 'f2f-cam[synth]')")
            video = Path(tmp) / "clip.mp4"
            synth.write_video(video, synth.SynthSpec(seconds=4.0, fps=15.0))
        if not as_json:
            click.echo(f"measuring persona {p.name} (compiling its generator first if this machine has not)...", err=True)
        r = bench_pipeline(p, video, frames=frames or 300, precision=cfg.precision, compile=not no_compile,
                           student=cfg.student)
        r["serial"] = bench_runtime(p, video, precision=cfg.precision, compile=not no_compile, student=cfg.student)
    click.echo(json.dumps(r, indent=2) if as_json else format_pipeline(r))


def _quality(cfg, drivers, reference, modes, frames, as_json) -> None:
    from f2f_cam.pipeline import resolve_persona
    from f2f_cam.quality_bench import bench_quality, format_quality
    from f2f_cam.registry import RETARGET_MODES

    for mode in modes:  # before anything slow
        RETARGET_MODES.check(mode)
    p = resolve_persona(cfg.persona)
    if p is None:
        raise UserError("no persona to measure; train one with `f2f-cam train` or import one")
    import torch

    # The figures do not depend on speed, and on a busy machine torch's worker threads
    # wait on each other between MediaPipe's calls: one thread used 4x less CPU here.
    torch.set_num_threads(1)
    if cfg.student == "always":  # the real-time student's figures; else the full generator's
        p = p.as_student()
    r = bench_quality(p, drivers=drivers, reference=reference, modes=modes, frames=frames,
                      precision=cfg.precision)
    click.echo(json.dumps(r, indent=2) if as_json else format_quality(r))
