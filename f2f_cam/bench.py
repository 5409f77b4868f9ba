"""Runtime speed: the pipeline end to end as the daemon runs it, and per stage.

``f2f-cam bench`` runs a face clip through the daemon's frame path (``flow.run`` with
the tracking thread one frame ahead of the generator, the compiled generator from the
cache, output 1280x720) unpaced, into a sink that notes when each frame arrives:
frames per second, capture-to-output latency, memory, start-up; then the generator
alone against the reference way of running it (the same network eager, fp32, NCHW),
and the stages one after another (``bench_runtime``). Timings are measured, never
asserted in tests: they depend on the machine and its load.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from f2f_cam.config import PipelineConfig
from f2f_cam.errors import UserError
from f2f_cam.system import cpu_count, split_threads


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
                  precision: str = "auto", runs: int = 50, compile: bool = True, student: str = "auto") -> dict:
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
    cfg = PipelineConfig(persona=persona.name, layout=layout, precision=precision, compile=compile, student=student)
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
        "ngf": persona.meta.get("generator", {}).get("ngf"), "precision": f"{gen.precision} {gen.engine}",
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


def _peak_mb() -> float | None:
    """Peak resident memory so far (None where the OS does not say: Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _rss_mb() -> float | None:
    """Resident memory now (Linux /proc; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return _peak_mb()


class _Arrivals:
    """A sink that notes when each frame arrives, and the memory once the warm-up
    frames are through (``rss_warm``: growth counts from there)."""

    def __init__(self, warm: int):
        self.times: list[float] = []
        self.warm = warm
        self.rss_warm = None

    def write(self, frame, t=None) -> None:
        self.times.append(time.perf_counter())
        if len(self.times) == self.warm:
            self.rss_warm = _rss_mb()


def _looped(frames: list, n: int, fps: float, stamps: list[float]):
    """n frames from the clip, looped, with increasing times; notes when each is taken."""
    for i in range(n):
        stamps.append(time.perf_counter())
        yield i / fps, frames[i % len(frames)]


def _generator_pair_ms(gen, sketch_img, runs: int) -> tuple[float, float]:
    """(runtime configuration, reference: the same TorchScript network eager fp32 NCHW)
    median ms, measured in turns so that both see the same machine load."""
    import torch

    from f2f_cam.generator import to_input

    x = to_input(sketch_img)
    gen.settle(sketch_img)
    running = gen.student if gen.use_student else gen  # the network that runs: its reference
    fast, ref = [], []
    with torch.inference_mode():
        for i in range(runs + 3):
            t = time.perf_counter()
            gen(sketch_img)
            t1 = time.perf_counter()
            running.module(x)
            t2 = time.perf_counter()
            if i >= 3:
                fast.append((t1 - t) * 1e3)
                ref.append((t2 - t1) * 1e3)
    return statistics.median(fast), statistics.median(ref)


class _UntilSettled:
    """A sink that closes (ending ``flow.run``) once the generator's start-up choices are made."""

    def __init__(self, pipe):
        self.pipe, self.frames, self.closed = pipe, 0, False

    def write(self, frame, t=None) -> None:
        self.frames += 1
        self.closed = self.pipe.generator is None or self.pipe.generator.settled


def _first_start_trials(cfg, out_size, persona, clip, fps_in, compile: str, most: int = 300) -> int:
    """Frames the generator's start-up trials took, run as the daemon's first start on
    this machine runs them (0 when an earlier start here measured them)."""
    from f2f_cam import flow
    from f2f_cam.pipeline import build_pipeline

    with build_pipeline(cfg, out_size, persona=persona, compile=compile) as pipe:
        if pipe.generator is None or pipe.generator.settled:
            return 0
        sink = _UntilSettled(pipe)
        flow.run(_looped(clip, most, fps_in, []), pipe, sink, overlap=True)
        return sink.frames


def bench_pipeline(persona, video: Path, *, frames: int = 300, out_size=(1280, 720), precision: str = "auto",
                   compile: bool = True, runs: int = 30, student: str = "auto") -> dict:
    """The daemon's frame path, unpaced: see the module docstring; ``compile_s`` is what
    compiling the generator took when the cache was cold (0 when it was warm)."""
    import torch

    from f2f_cam import flow, sketch
    from f2f_cam.generator import Generator
    from f2f_cam.pipeline import build_pipeline
    from f2f_cam.sources import open_source

    with open_source(video) as src:
        clip = [frame for _, frame in src]
        fps_in = float(src.fps or 30.0)  # PyAV gives a Fraction: times must be floats
    if not clip:
        raise UserError(f"{video} has no frames")
    cfg = PipelineConfig(persona=persona.name, layout="persona", precision=precision, compile=compile, student=student)
    split_threads()  # as the daemon
    t = time.perf_counter()
    loaded = Generator(persona, device=cfg.device, precision=precision, compile="now" if compile else "off",
                       student=student)
    compile_s = time.perf_counter() - t  # loading alone when the cache is warm
    # The first start on a machine tries compiled against eager and times the full
    # generator against its student on its first frames, then remembers (accel.recall);
    # the bench measures a start after that, as the daemon runs every day.
    trial_frames = 0 if loaded.settled else \
        _first_start_trials(cfg, out_size, persona, clip, fps_in, "cached" if compile else "off")
    del loaded
    stamps: list[float] = []
    sink = _Arrivals(warm=min(100, frames // 5))  # memory growth counts from here
    t_start = time.perf_counter()
    with build_pipeline(cfg, out_size, persona=persona, compile="cached" if compile else "off") as pipe:
        flow.run(_looped(clip, frames, fps_in, stamps), pipe, sink, overlap=True)
        stage_ms = pipe.stats.as_dict()["stage_ms"]
        gen = pipe.generator
        faces = pipe.stats.faces
    rss_end = _rss_mb()
    arrive = np.array(sink.times)
    warm = min(10, len(arrive) // 4)  # the first frames allocate and pick kernels
    latency = (arrive - np.array(stamps[:len(arrive)]))[warm:] * 1e3
    gen_ms, ref_ms = _generator_pair_ms(gen, sketch.render(persona.neutral, persona.image_size), runs)
    return {
        "persona": persona.name, "image_size": persona.image_size,
        "ngf": persona.meta.get("generator", {}).get("ngf"),
        "frames": len(arrive), "frames_with_face": faces, "output": f"{out_size[0]}x{out_size[1]}",
        "fps": round((len(arrive) - 1 - warm) / (arrive[-1] - arrive[warm]), 1) if len(arrive) > warm + 1 else None,
        "latency_ms_p50": round(float(np.percentile(latency, 50)), 1),
        "latency_ms_p95": round(float(np.percentile(latency, 95)), 1),
        "stages_ms": stage_ms,
        "generator_ms": round(gen_ms, 2), "reference_generator_ms": round(ref_ms, 2),
        "speedup": round(ref_ms / gen_ms, 2),
        "precision": gen.precision, "engine": gen.engine,
        # A persona with a real-time student: which network ran, and what the full one took.
        "generator": "student" if gen.use_student else "full",
        "full_generator_ms": round(gen.full_ms, 2) if gen.full_ms is not None else None,
        "threads": {"torch": torch.get_num_threads(), "cpus": cpu_count()},
        "rss_mb": round(peak, 1) if (peak := _peak_mb()) is not None else None,
        "rss_growth_mb": round(rss_end - sink.rss_warm, 1) if None not in (rss_end, sink.rss_warm) else None,
        "startup_s": round(sink.times[0] - t_start, 2), "compile_s": round(compile_s, 2),
        "first_start_trial_frames": trial_frames,
        "torch": torch.__version__,
    }


def format_pipeline(r: dict) -> str:
    """The end-to-end report, then the serial per-stage table (``r["serial"]``)."""
    stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stages_ms"].items())
    lines = [f"persona {r['persona']} ({r['image_size']} px, ngf {r['ngf']}), {r['frames']} frames -> "
             f"{r['output']}, face in {r['frames_with_face']}; as the daemon runs it, unpaced:",
             f"  {r['fps']} fps, latency p50 {r['latency_ms_p50']} ms, p95 {r['latency_ms_p95']} ms (frame taken -> out)",
             f"  stages (ms, moving average): {stages}",
             f"  generator {r['generator_ms']} ms ({r['precision']}, {r['engine']}) against {r['reference_generator_ms']} ms "
             f"eager fp32 NCHW: {r['speedup']}x",
             f"  memory {r['rss_mb']} MB peak, {r['rss_growth_mb']} MB growth after warm-up; "
             f"first frame {r['startup_s']} s after start (compile cache: {r['compile_s']} s; "
             + (f"the first start here tried the generator's ways on {r['first_start_trial_frames']} frames)"
                if r["first_start_trial_frames"] else "the generator's ways measured at an earlier start)"),
             f"  torch {r['torch']}, {r['threads']['torch']} torch threads, {r['threads']['cpus']} CPUs",
             "", "serially, one stage after another:"]
    return "\n".join(lines + ["  " + line for line in format_runtime(r["serial"]).splitlines()])
