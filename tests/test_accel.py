"""The real-time path (issue 11): the compiled generator against fp32, its fallbacks,
the overlapped stages against the serial ones, and ``bench``'s report."""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest

from f2f_cam import accel, flow, sketch
from f2f_cam.config import PipelineConfig
from f2f_cam.generator import Generator
from f2f_cam.pipeline import build_pipeline
from f2f_cam.sources import open_source
from conftest import run_cli


class Keep:
    def __init__(self):
        self.frames = []

    def write(self, frame, t=None):
        self.frames.append(np.array(frame))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def sketches(persona, clip, n: int = 6) -> list[np.ndarray]:
    """The persona's sketches of the first n frames of clip with a face, and its neutral one."""
    cfg = PipelineConfig(persona=persona.name, retarget="transfer", compile=False)
    out = [sketch.render(persona.neutral, persona.image_size)]
    with build_pipeline(cfg, (128, 128), persona=persona) as pipe, open_source(clip) as src:
        for t, frame in src:
            if pipe.track(frame, t).new_sketch:
                out.append(pipe.last_sketch)
            if len(out) > n:
                break
    return out


@pytest.mark.parametrize("layout", ["persona", "side-by-side"])
def test_overlapped_stages_give_the_serial_frames(installed_persona, talking_head, layout):
    cfg = PipelineConfig(persona=installed_persona.name, layout=layout, compile=False)
    runs = []
    for overlap in (False, True):
        sink = Keep()
        with build_pipeline(cfg, (160, 120)) as pipe, open_source(talking_head[0]) as src:
            n = flow.run(src, pipe, sink, overlap=overlap)
        runs.append(sink.frames)
        assert n == len(sink.frames) > 20
    assert len(runs[0]) == len(runs[1])
    assert all(np.array_equal(a, b) for a, b in zip(*runs))


def test_overlapped_run_passes_a_frame_error_on_in_order(installed_persona, talking_head):
    cfg = PipelineConfig(persona=installed_persona.name, compile=False)
    errors, sink = [], Keep()
    with build_pipeline(cfg, (160, 120)) as pipe, open_source(talking_head[0]) as src:
        frames = [(t, f if i != 3 else np.zeros((5, 5), np.uint8)) for i, (t, f) in enumerate(src)][:8]
        flow.run(frames, pipe, sink, overlap=True, on_error=errors.append)
    assert len(errors) == 1 and len(sink.frames) == 7
    with build_pipeline(cfg, (160, 120)) as pipe, pytest.raises(Exception):
        flow.run(frames, pipe, Keep(), overlap=True)


def test_overlapped_run_does_work_between_frames(installed_persona, talking_head, caplog):
    """The tracking thread runs the pipeline's ``between_frames`` (the detector's check for a
    larger face) after it hands each frame on; a failure there is logged and costs no
    frame."""
    cfg = PipelineConfig(persona=installed_persona.name, compile=False)
    with build_pipeline(cfg, (160, 120)) as pipe, open_source(talking_head[0]) as src:
        frames = list(src)[:8]
        calls = []

        class Watched:
            track, finish = pipe.track, pipe.finish

            def between_frames(self):
                calls.append(threading.current_thread().name)
                pipe.between_frames()
                if len(calls) == 2:
                    raise RuntimeError("broke")

        sink = Keep()
        assert flow.run(frames, Watched(), sink, overlap=True) == 8 == len(sink.frames)
    assert calls == ["f2f-track"] * 8
    assert [r.message for r in caplog.records if r.name == "f2f_cam.flow"] == ["work between frames failed"]


def test_compiled_generator_matches_fp32_and_is_cached(with_bundled, monkeypatch, talking_head):
    """The bundled (trained) persona, compiled in the background as the daemon does it:
    output PSNR against the fp32 generator >= 35 dB; the next load comes from the cache."""
    problem = accel.compiler_problem()
    monkeypatch.setenv("F2F_CAM_COMPILE", "1")
    from f2f_cam.persona import PersonaStore

    persona = PersonaStore().get("astronaut")
    gen = Generator(persona, compile="background")
    if problem:  # no C++ compiler here: the eager path runs, and says why
        assert gen.engine == "eager" and gen.compile_error == problem
        return
    assert gen.engine == "eager (compiling)"
    assert gen.compiler.wait(timeout=600) is not None, gen.compiler.error
    gen.trial.verdict = "compiled"  # the compiled way on every frame (which way is faster: the next test)
    fp32 = Generator(persona, precision="fp32", compile="off")
    scores = []
    for s in sketches(persona, talking_head[0]):
        scores.append(psnr(gen(s), fp32(s)))
    assert gen.engine == "compiled"
    assert min(scores) >= 35.0, scores
    again = Generator(persona, compile="cached")
    assert again.engine == "compiled" and again.compiler is None
    again.trial.verdict = "compiled"
    assert np.array_equal(again(s), gen(s))


def delayed(fn, seconds: float):
    """fn, answering ``seconds`` later; counts its calls."""
    import time

    def call(x):
        call.calls += 1
        time.sleep(seconds)
        return fn(x)

    call.calls = 0
    return call


@pytest.mark.parametrize("slower", ["compiled", "eager"])
def test_the_faster_of_compiled_and_eager_is_kept(installed_persona, slower, monkeypatch):
    """On an AVX2-only CPU the compiled generator was slower than eager (72 against 49 ms):
    the first frames run both ways in turns and the faster way stays. The compiled
    library is stood in for by the eager path made slower or left as it is."""
    import torch

    gen = Generator(installed_persona, compile="off")
    s = sketch.render(installed_persona.neutral, installed_persona.image_size)
    eager = gen._eager
    gen.compiled = delayed(lambda x: torch.from_numpy(eager(x.numpy())), 0.15 if slower == "compiled" else 0.0)
    gen._eager = delayed(eager, 0.15 if slower == "eager" else 0.0)
    n = gen.trial.WARMUP + gen.trial.RUNS
    compiled = gen.compiled
    outputs = [gen(s) for _ in range(2 * n)]
    assert all(np.array_equal(o, outputs[0]) for o in outputs)
    assert compiled.calls == gen._eager.calls == n  # in turns: as many each way
    kept = "eager" if slower == "compiled" else "compiled"
    assert gen.trial.verdict == kept
    gen(s)
    if kept == "eager":
        assert gen.compiled is None and gen.engine == "eager (faster than compiled here)"
        assert compiled.calls == n and gen._eager.calls == n + 1  # the compiled way never again
    else:
        assert gen.engine == "compiled" and compiled.calls == n + 1 and gen._eager.calls == n
    # Kept for the next start on this machine, which runs that way from its first frame.
    assert accel.recall(gen.path, gen.size, gen.precision, gen.threads)["trial"] == kept
    monkeypatch.setenv("F2F_CAM_COMPILE", "1")
    again = Generator(installed_persona, compile="cached")  # no package cached: nothing compiles
    assert again.trial.verdict == kept and again.compiler is None
    if kept == "eager":
        assert again.engine == "eager (faster than compiled here)"


def test_a_timing_record_holds_only_for_its_machine_and_survives_damage(installed_persona):
    gen = Generator(installed_persona, compile="off")
    args = (gen.path, gen.size, gen.precision)
    assert accel.recall(*args, gen.threads) == {}
    accel.remember(*args, gen.threads, trial="eager")
    accel.remember(*args, gen.threads, full_ms=31.5, full_engine="eager")  # beside what was kept
    assert accel.recall(*args, gen.threads) == {"trial": "eager", "full_ms": 31.5, "full_engine": "eager"}
    assert accel.recall(*args, gen.threads + 1) == {}  # measured with another thread count
    record = json.loads(accel.timing_path(*args).read_text())
    assert record["facts"]["cpu_model"] and record["facts"]["cpus"] >= 1
    for damage in ("{not json", "[1, 2]", json.dumps({"facts": record["facts"], "values": 3})):
        accel.timing_path(*args).write_text(damage)
        assert accel.recall(*args, gen.threads) == {}
        Generator(installed_persona, compile="off")  # loads as if nothing was kept


def test_compile_falls_back_to_eager(installed_persona, monkeypatch, tmp_path):
    sketch_img = np.zeros((installed_persona.image_size,) * 2 + (3,), np.uint8)
    off = Generator(installed_persona, compile="now")  # F2F_CAM_COMPILE=0 in the tests
    assert off.engine == "eager" and off.compiled is None
    monkeypatch.setenv("F2F_CAM_COMPILE", "1")
    monkeypatch.setenv("PATH", str(tmp_path))  # no C++ compiler on PATH
    failed = Generator(installed_persona, compile="now")
    assert failed.engine == "eager" and "C++ compiler" in failed.compile_error
    assert failed(sketch_img).shape == sketch_img.shape
    background = Generator(installed_persona, compile="background")
    assert background.compiler is None and background.engine == "eager"
    fp32 = Generator(installed_persona, precision="fp32", compile="off")
    assert fp32.precision == "fp32" and fp32.engine == "eager"


def test_bench_reports_every_figure(installed_persona, talking_head):
    proc = run_cli("bench", "--persona", installed_persona.name, "--video", talking_head[0], "--frames", 40,
                   "--no-compile", "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    for key in ("fps", "latency_ms_p50", "latency_ms_p95", "stages_ms", "generator_ms", "reference_generator_ms",
                "speedup", "precision", "threads", "rss_mb", "rss_growth_mb", "startup_s", "persona", "frames",
                "serial", "generator", "full_generator_ms", "first_start_trial_frames"):
        assert key in r, key
    assert r["frames"] == 40 and r["persona"] == installed_persona.name
    assert r["fps"] > 0 and 0 < r["latency_ms_p50"] <= r["latency_ms_p95"] < 60_000
    assert r["generator_ms"] > 0 and r["reference_generator_ms"] > 0 and r["speedup"] > 0
    assert {"landmarks", "generator", "compose"} <= set(r["stages_ms"])
    assert 50 < r["rss_mb"] < 8000 and abs(r["rss_growth_mb"]) < 1000 and 0 < r["startup_s"] < 120
    assert r["threads"]["torch"] >= 1 and r["engine"] == "eager"
    # No student and nothing compiled: nothing to try on the first frames.
    assert r["generator"] == "full" and r["full_generator_ms"] is None and r["first_start_trial_frames"] == 0
    assert r["serial"]["total_ms"] > 0 and "generator" in r["serial"]["stage_ms"]
    text = run_cli("bench", "--persona", installed_persona.name, "--video", talking_head[0], "--frames", 20,
                   "--no-compile")
    assert text.returncode == 0 and "latency p50" in text.stdout and "serially" in text.stdout
