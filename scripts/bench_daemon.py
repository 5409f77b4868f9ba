"""Measure the daemon in real time: output fps, processed fps, capture-to-publish latency.

The camera is a generated 640x480 30 fps talking-head clip played in real time (as
`f2f-cam run --camera FILE` does); the output is a 1280x720 30 fps virtual camera
through a counting pyvirtualcam backend; the personas are the bundled demo persona and freshly initialised
generators exported through the real export path (speed does not depend on training).

    python scripts/bench_daemon.py [--seconds 10] [--persona tiny,ngf32,DIR] [--dtype float32]

A --persona entry that is a folder is a persona folder (a trained one, e.g. one that
`f2f-cam train` made with the defaults), copied into the temporary store and measured
in its default retarget mode.

Everything is written to a temporary folder; nothing touches the user's folders.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name: (image size, ngf); "astronaut" is the bundled, trained demo persona.
PERSONAS = {"tiny": (64, 8), "ngf32": (256, 32), "ngf64": (256, 64), "astronaut": (256, 16), "ngf8x512": (512, 8),
            "ngf16x512": (512, 16)}


class CountingCam:
    """A pyvirtualcam backend that only notes when each frame arrives."""

    last = None

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height, self.times = width, height, []
        CountingCam.last = self

    def send(self, frame):
        assert frame.size == self.width * self.height * 3
        self.times.append(time.perf_counter())

    def close(self):
        pass

    def device(self):
        return "bench"

    def native_fourcc(self):
        return None


def make_clip(path: Path, seconds: float) -> None:
    from trainers import synth

    synth.write_video(path, synth.SynthSpec(width=640, height=480, fps=30.0, seconds=seconds, shift=30.0, seed=4))


def make_persona(name: str, clip: Path, work: Path, dtype: str):
    import torch

    from f2f_cam.landmarks import LandmarkDetector
    from f2f_cam.persona import PersonaStore
    from f2f_cam.sources import VideoFileSource
    from trainers.dataset import face_crop, reference_landmarks
    from trainers.export import export_persona
    from trainers.networks import define_G

    size, ngf = PERSONAS[name]
    with VideoFileSource(clip) as src, LandmarkDetector(mode="video") as det:
        faces = [det(frame, int(t * 1000)) for t, frame in src]
        frame_size = src.size
    points = [f.points for f in faces if f is not None][:60]
    crop = face_crop(points, frame_size)
    canonical, neutral = reference_landmarks(points, crop, size)
    torch.manual_seed(0)
    net = define_G("unet", size=size, ngf=ngf, norm="instance" if size == 512 else "batch").eval()
    folder = export_persona(net, work / name, name=name, image_size=size, crop=crop, canonical=canonical,
                            neutral=neutral, dtype=dtype, generator_info={"ngf": ngf})
    return PersonaStore().install_folder(folder, force=True)


def measure(clip: Path, persona: str, seconds: float, warmup: float) -> dict:
    from f2f_cam.config import DaemonConfig, PipelineConfig
    from f2f_cam.daemon import Daemon
    from f2f_cam.generator import Generator
    from f2f_cam.persona import PersonaStore

    # A warm compile cache, as on every start after the first (the first compiles in
    # the background while the eager generator runs).
    Generator(PersonaStore().get(persona), compile="now")

    cfg = DaemonConfig(camera=str(clip), output="virtualcam", backend="counting", size="1280x720", fps=30,
                       tray=False)
    t_start = time.perf_counter()
    d = Daemon(cfg, PipelineConfig(persona=persona, layout="persona"), control=False).start()
    try:
        time.sleep(warmup)
        cam = CountingCam.last
        first_frame_s = cam.times[0] - t_start if cam.times else float("nan")
        n0, p0, c0, dr0 = len(cam.times), d._processed, d.capture.captured, d.capture.dropped
        t0 = time.perf_counter()
        latencies = []
        while time.perf_counter() - t0 < seconds:
            time.sleep(0.25)
            if d.status().latency_ms is not None:
                latencies.append(d.status().latency_ms)
        elapsed = time.perf_counter() - t0
        st = d.status().as_dict()
        times = [t for t in cam.times[n0:]]
        gaps = [b - a for a, b in zip(times, times[1:])]
        return {
            "persona": persona,
            "output_fps": (len(cam.times) - n0) / elapsed,
            "processed_fps": (d._processed - p0) / elapsed,
            "camera_fps": (d.capture.captured - c0) / elapsed,
            "dropped": d.capture.dropped - dr0,
            "latency_ms_median": statistics.median(latencies) if latencies else float("nan"),
            "latency_ms_max": max(latencies) if latencies else float("nan"),
            "gap_ms_p99": sorted(gaps)[int(0.99 * (len(gaps) - 1))] * 1e3 if gaps else float("nan"),
            "stage_ms": st["stage_ms"],
            "serial_fps": 1000 / sum(st["stage_ms"].values()) if st["stage_ms"] else float("nan"),
            "startup_s": first_frame_s,  # Daemon start (lock, persona, models, camera) -> first published frame
        }
    finally:
        d.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per persona")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    ap.add_argument("--persona", default="astronaut,ngf32",
                    help="comma-separated: astronaut (bundled, 256 px, ngf=16), tiny (64 px, ngf=8), ngf32 (256 px), "
                         "ngf8x512 (512 px, ngf=8, instance norm: train's defaults), ngf16x512 (the same, twice as wide), "
                         "or a persona folder")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="generator dtype")
    args = ap.parse_args()

    import pyvirtualcam
    import pyvirtualcam.camera
    import torch

    work = Path(tempfile.mkdtemp(prefix="f2f-bench-"))
    for var in ("DATA", "CONFIG", "CACHE", "RUNTIME", "LOG"):
        os.environ[f"F2F_CAM_{var}_DIR"] = str(work / var.lower())
    pyvirtualcam.register_backend("counting", CountingCam)
    clip = work / "clip640x480.mp4"
    make_clip(clip, seconds=8.0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"camera: 640x480 30 fps clip in real time; output: 1280x720 at 30 fps; generator {args.dtype}")
    try:
        for name in args.persona.split(","):
            if Path(name).is_dir():
                from f2f_cam.persona import PersonaStore

                p = PersonaStore().install_folder(Path(name), force=True)
                name, size, ngf = p.name, p.image_size, p.meta["generator"].get("ngf")
            elif name != "astronaut":
                make_persona(name, clip, work, args.dtype)
            if name in PERSONAS:
                size, ngf = PERSONAS[name]
            r = measure(clip, name, args.seconds, args.warmup)
            stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stage_ms"].items())
            print(f"{name} ({size} px, ngf={ngf}): output {r['output_fps']:.1f} fps, processed "
                  f"{r['processed_fps']:.1f} fps of the camera's {r['camera_fps']:.1f} ({r['dropped']} dropped), "
                  f"latency {r['latency_ms_median']:.0f} ms median (max {r['latency_ms_max']:.0f}), "
                  f"output gap p99 {r['gap_ms_p99']:.1f} ms; serial would be {r['serial_fps']:.1f} fps; "
                  f"stages ms: {stages}; first frame {r['startup_s']:.2f} s after the daemon's start")
    finally:
        pyvirtualcam.camera.BACKENDS.pop("counting", None)


if __name__ == "__main__":
    main()
