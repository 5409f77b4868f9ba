"""Runtime speed: per-stage milliseconds and frames per second of the pipeline.

``f2f-cam bench`` runs a face clip through the same stages as ``f2f-cam video`` and
``f2f-cam run``, serially, and reports medians. Timings are measured, never asserted
in tests: they depend on the machine and its load.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from f2f_cam.config import PipelineConfig
from f2f_cam.errors import UserError


def _median_ms(fn, arg, runs: int) -> float:
    for _ in range(3):  # warm-up: first calls allocate and pick kernels
        fn(arg)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn(arg)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


class _Discard:
    """A sink that drops every frame: the bench measures the pipeline, not an encoder."""

    def write(self, frame, t=None) -> None:
        pass


def bench_runtime(persona, video: Path, out_size=(1280, 720), layout: str = "persona",
                  precision: str = "auto", runs: int = 50) -> dict:
    """Median ms per stage over the clip's frames, plus the generator alone."""
    import torch

    from f2f_cam import flow, sketch
    from f2f_cam.pipeline import build_pipeline
    from f2f_cam.sources import open_source

    with open_source(video) as src:
        frames = list(src)
        in_size = src.size
    if not frames:
        raise UserError(f"{video} has no frames")
    cfg = PipelineConfig(persona=persona.name, layout=layout, precision=precision)
    samples: dict[str, list[float]] = {}
    totals: list[float] = []
    with build_pipeline(cfg, out_size, persona=persona) as pipe:
        last = [time.perf_counter()]

        def record(_t: float) -> None:  # after each frame: its total and its stages
            now = time.perf_counter()
            totals.append((now - last[0]) * 1e3)
            if len(totals) > 3:  # skip warm-up frames
                for k, v in pipe.stats.stage_ms.items():
                    samples.setdefault(k, []).append(v)
            pipe.stats.stage_ms.clear()
            last[0] = time.perf_counter()

        flow.run(frames, pipe, _Discard(), on_frame=record)
        faces = pipe.stats.faces
        gen = pipe.generator
    neutral = sketch.render(persona.neutral, persona.image_size)
    result = {
        "persona": persona.name, "image_size": persona.image_size,
        "ngf": persona.meta.get("generator", {}).get("ngf"), "precision": gen.precision,
        "input": f"{in_size[0]}x{in_size[1]}", "output": f"{out_size[0]}x{out_size[1]}", "layout": layout,
        "frames": len(frames), "frames_with_face": faces,
        "stage_ms": {k: round(statistics.median(v), 2) for k, v in samples.items()},
        "total_ms": round(statistics.median(totals[3:] or totals), 2),
        "generator_alone_ms": round(_median_ms(gen, neutral, runs), 2),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
    result["serial_fps"] = round(1000 / result["total_ms"], 1)
    return result


def format_runtime(r: dict) -> str:
    lines = [f"persona {r['persona']} ({r['image_size']} px, ngf {r['ngf']}, {r['precision']}), "
             f"{r['frames']} frames {r['input']} -> {r['output']} {r['layout']}, face in {r['frames_with_face']}"]
    for k, v in r["stage_ms"].items():
        lines.append(f"  {k:<16} {v:7.2f} ms")
    lines.append(f"  {'total':<16} {r['total_ms']:7.2f} ms  ({r['serial_fps']} fps serial)")
    lines.append(f"  generator alone  {r['generator_alone_ms']:7.2f} ms (median of repeated runs)")
    lines.append(f"  torch {r['torch']}, {r['threads']} threads")
    return "\n".join(lines)
