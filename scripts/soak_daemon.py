"""60 s of `f2f-cam run` as a user would drive it, checked from the outside.

The daemon publishes to a recording pyvirtualcam backend (no machine here has a
virtual camera); its camera is a face clip played in real time, unplugged for a while
(reads and re-opens fail) to show camera loss. Along the way `f2f-cam ctl` (a separate
process, over the real control socket) switches persona and layout, pauses and resumes,
and reads `status --json`, which is compared with what the recorder received.

    python scripts/soak_daemon.py [--seconds 60] [--video CLIP.mp4]

Prints a timeline and the output's frame rate and largest gap; exits 1 if a check fails.
Everything lives in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Recorder:
    """pyvirtualcam backend: keeps the arrival time and (``keep_thumbs``) a small copy of
    every frame."""

    last = None
    keep_thumbs = True

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height = width, height
        self.times, self.thumbs = [], []
        Recorder.last = self

    def send(self, frame):
        self.times.append(time.monotonic())
        if self.keep_thumbs:
            self.thumbs.append(frame.reshape(self.height, self.width, 3)[::16, ::16].copy())

    def close(self):
        pass

    def device(self):
        return "recorder0"

    def native_fourcc(self):
        return None


class Unpluggable:
    """The real live source for a clip, 'unplugged' between two moments."""

    window = (0.0, 0.0)

    def __init__(self, video):
        from f2f_cam.errors import UserError
        from f2f_cam.sources import open_source

        if self.unplugged():
            raise UserError("cannot open camera: unplugged")
        self.src = open_source(video, live=True)

    @classmethod
    def unplugged(cls) -> bool:
        return cls.window[0] <= time.monotonic() < cls.window[1]

    def read(self, timeout=1.0):
        if self.unplugged():
            time.sleep(0.05)
            raise OSError("VIDIOC_DQBUF: No such device")
        return self.src.read(timeout)

    def close(self):
        self.src.close()


def ctl(*args) -> dict | str:
    proc = subprocess.run([sys.executable, "-m", "f2f_cam", "ctl", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=30)
    if proc.returncode != 0:
        raise SystemExit(f"ctl {' '.join(args)} failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout) if "--json" in args else proc.stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--video", type=Path, default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="f2f-soak-"))
    for var in ("DATA", "CONFIG", "CACHE", "RUNTIME", "LOG"):
        os.environ[f"F2F_CAM_{var}_DIR"] = str(tmp / var.lower())

    import pyvirtualcam
    import torch

    from f2f_cam.config import DaemonConfig, PipelineConfig
    from f2f_cam.daemon import Daemon
    from f2f_cam.persona import PersonaStore
    from trainers import synth
    from trainers.export import export_persona
    from trainers.networks import define_G

    video = args.video or tmp / "clip.mp4"
    if args.video is None:
        synth.write_video(video, synth.SynthSpec(width=640, height=480, fps=30.0, seconds=8.0, seed=3))
    # A second persona to switch to: the bundled one's geometry, an untrained generator.
    store = PersonaStore()
    demo = store.get("astronaut")
    torch.manual_seed(0)
    export_persona(define_G(size=256, ngf=16).eval(), tmp / "other", name="other", image_size=256,
                   crop=demo.crop, canonical=demo.canonical, neutral=demo.neutral)
    store.install_folder(tmp / "other")

    pyvirtualcam.register_backend("recorder", Recorder)
    total = args.seconds
    t0 = time.monotonic()
    Unpluggable.window = (t0 + 0.55 * total, t0 + 0.70 * total)
    d = Daemon(DaemonConfig(camera=str(video), output="virtualcam", backend="recorder", size="1280x720",
                            fps=30, tray=False, retry_seconds=0.5),
               PipelineConfig(persona="astronaut", layout="persona"),
               open_source=lambda: Unpluggable(video)).start()
    rec = Recorder.last
    plan = [(0.10, "status", ()), (0.20, "persona", ("other",)), (0.30, "status", ()),
            (0.35, "pause", ()), (0.42, "status", ()), (0.45, "resume", ()), (0.50, "persona", ("astronaut",)),
            (0.62, "status", ()), (0.80, "status", ()), (0.85, "layout", ("side-by-side",)),
            (0.95, "status", ())]
    timeline, failures = [], []
    marks = {}
    try:
        for at, cmd, cmd_args in plan:
            while time.monotonic() - t0 < at * total:
                time.sleep(0.05)
            if cmd == "status":
                s = ctl("status", "--json")
                st = s.get("status", s)
                timeline.append((time.monotonic() - t0, "status", {k: st.get(k) for k in (
                    "persona", "layout", "paused", "camera", "fps", "latency_ms", "dropped", "frames_out", "face")}))
            else:
                key = cmd + ":" + ",".join(cmd_args)
                before = len(rec.times)
                # ctl answers once a frame with the new setting has been published.
                timeline.append((time.monotonic() - t0, cmd, ctl(cmd, *cmd_args)))
                marks[key] = (before, len(rec.times))
        while time.monotonic() - t0 < total:
            time.sleep(0.05)
    finally:
        d.stop()

    times = np.array(rec.times)
    gaps = np.diff(times)
    fps = (len(times) - 1) / (times[-1] - times[0])
    for t, what, info in timeline:
        print(f"{t:6.1f} s  {what:<8} {info}")
    print(f"published {len(times)} frames in {times[-1] - times[0]:.1f} s: {fps:.2f} fps, "
          f"largest gap {gaps.max() * 1e3:.0f} ms, 99th percentile {np.percentile(gaps, 99) * 1e3:.0f} ms")

    # Checks against what the recorder saw.
    statuses = [info for _, what, info in timeline if what == "status"]
    want = [("astronaut", "persona", False, "ok"), ("other", "persona", False, "ok"), ("other", "persona", True, "ok"),
            ("astronaut", "persona", False, "lost"), ("astronaut", "persona", False, "ok"),
            ("astronaut", "side-by-side", False, "ok")]
    got = [(s["persona"], s["layout"], s["paused"], s["camera"]) for s in statuses]
    if got != want:
        failures.append(f"status said {got}, expected {want}")
    paused = rec.thumbs[marks["pause:"][1]: marks["resume:"][0]]
    if len(paused) < 30 or any(not np.array_equal(paused[0], f) for f in paused):
        failures.append("frames changed while paused")
    before, after = marks["persona:other"]
    a, b = rec.thumbs[before - 1], rec.thumbs[after]
    if np.abs(a.astype(int) - b.astype(int)).mean() < 5:
        failures.append("the persona switch did not show in the output")
    if gaps.max() > 0.2 or abs(fps - 30) > 1.5:
        failures.append(f"output not steady: {fps:.1f} fps, gap {gaps.max() * 1e3:.0f} ms")
    for f in failures:
        print("FAILED:", f)
    print("all checks passed" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
