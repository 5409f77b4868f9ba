"""The real-time path (issue 11): the compiled generator against fp32, its fallbacks,
the overlapped stages against the serial ones, and ``bench``'s report."""

from __future__ import annotations

import json
import math

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
    fp32 = Generator(persona, precision="fp32", compile="off")
    scores = []
    for s in sketches(persona, talking_head[0]):
        scores.append(psnr(gen(s), fp32(s)))
    assert gen.engine == "compiled"
    assert min(scores) >= 35.0, scores
    again = Generator(persona, compile="cached")
    assert again.engine == "compiled" and again.compiler is None
    assert np.array_equal(again(s), gen(s))


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
                "serial"):
        assert key in r, key
    assert r["frames"] == 40 and r["persona"] == installed_persona.name
    assert r["fps"] > 0 and 0 < r["latency_ms_p50"] <= r["latency_ms_p95"] < 60_000
    assert r["generator_ms"] > 0 and r["reference_generator_ms"] > 0 and r["speedup"] > 0
    assert {"landmarks", "generator", "compose"} <= set(r["stages_ms"])
    assert 50 < r["rss_mb"] < 8000 and abs(r["rss_growth_mb"]) < 1000 and 0 < r["startup_s"] < 120
    assert r["threads"]["torch"] >= 1 and r["engine"] == "eager"
    assert r["serial"]["total_ms"] > 0 and "generator" in r["serial"]["stage_ms"]
    text = run_cli("bench", "--persona", installed_persona.name, "--video", talking_head[0], "--frames", 20,
                   "--no-compile")
    assert text.returncode == 0 and "latency p50" in text.stdout and "serially" in text.stdout
