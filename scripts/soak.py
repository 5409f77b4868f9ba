"""The long soak (issue 13): the daemon for 20,000 frames, checked from the outside.

The daemon (in this process, as `f2f-cam run` builds it) publishes 1280x720 at 30 fps
to a recording pyvirtualcam backend; its camera is a real face clip played live and
looped. Every 2,000 published frames it is driven as a user would, over the real
control socket: a persona switch, a layout switch, and the camera unplugged for two
seconds (reads and re-opens fail). Every 500 frames the script samples this process's
RSS, threads and open file descriptors.

    python scripts/soak.py [--frames 20000] [--video ../shared/assets/faces/d13.mp4]
                           [--persona-dir FOLDER] [--json soak.json] [--cache-dir DIR]
                           [--no-switch] [--no-unplug]

Checks: no crash; RSS growth <= 20 MB (the largest sample of the first full cycle,
frames 2,000-4,000, against the largest of the last 2,000 frames); no growth in
threads or open files (same comparison); the output never
stalls longer than 100 ms (the largest gap between two published frames, camera
losses and switches included). Exits 1 if a check fails. Everything it writes lives
in a temporary folder; generators are compiled there first, so no compile runs
during the soak.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from soak_daemon import Recorder, Unpluggable  # noqa: E402 (after the path)

CYCLE = 2000  # frames between two rounds of persona switch, layout switch, camera loss
SAMPLE = 500  # frames between two samples of RSS, threads, open files
UNPLUG_S = 2.0
LIMITS = {"rss_growth_mb": 20.0, "threads_growth": 0, "fds_growth": 0, "max_gap_ms": 100.0}


def sample() -> dict:
    with open("/proc/self/status") as f:
        rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return {"rss_mb": rss_kb / 1024, "threads": len(os.listdir("/proc/self/task")),
            "python_threads": threading.active_count(), "fds": len(os.listdir("/proc/self/fd"))}


def setup(tmp: Path, extra: list[Path]) -> list[str]:
    """The temporary store: the bundled astronaut, the ``extra`` persona folders, or an
    untrained second persona; each generator compiled into the temporary cache."""
    import torch

    from f2f_cam.generator import Generator
    from f2f_cam.persona import PersonaStore
    from trainers.export import export_persona
    from trainers.networks import define_G

    store = PersonaStore()
    if not extra:
        demo = store.get("astronaut")
        torch.manual_seed(0)
        export_persona(define_G(size=256, ngf=16).eval(), tmp / "other", name="other", image_size=256,
                       crop=demo.crop, canonical=demo.canonical, neutral=demo.neutral)
        extra = [tmp / "other"]
    for folder in extra:
        store.install_folder(folder)
    names = ["astronaut"] + [Path(f).name for f in extra]
    for name in names:
        t0 = time.monotonic()
        Generator(store.get(name), compile="now")
        print(f"compiled {name} in {time.monotonic() - t0:.0f} s", flush=True)
    return names


def drive(d, rec: Recorder, names: list[str], frames: int, video: Path, switch: bool = True,
          unplug: bool = True) -> tuple[list, list]:
    """Run until ``frames`` are published: the events of every cycle, and the samples."""
    from f2f_cam.control import ControlClient

    client = ControlClient(timeout=30)
    layouts = ["side-by-side", "persona"]
    events, samples = [], []
    cycle = 0
    while len(rec.times) < frames:
        n = len(rec.times)
        if n >= (cycle + 1) * CYCLE:
            cycle += 1
            persona, layout = names[cycle % len(names)], layouts[cycle % 2]
            t0 = time.monotonic()
            if switch:
                client.request("persona", persona)
                client.request("layout", layout)
            if unplug:
                Unpluggable.window = (time.monotonic(), time.monotonic() + UNPLUG_S)
            events.append({"frame": n, "persona": persona, "layout": layout,
                           "switch_s": round(time.monotonic() - t0, 2)})
        if n >= len(samples) * SAMPLE:
            st = client.request("status")["status"]
            samples.append({"frame": n, **sample(), "camera": st["camera"], "dropped": st["dropped"]})
            if len(samples) % 4 == 1:
                s = samples[-1]
                print(f"frame {n:6d}: rss {s['rss_mb']:.0f} MB, {s['threads']} threads, {s['fds']} fds, "
                      f"camera {s['camera']}, dropped {s['dropped']}", flush=True)
        if d.wait(timeout=0.05):
            raise SystemExit(f"the daemon stopped on its own: {d.error}")
    return events, samples


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--video", type=Path, default=ROOT.parent / "shared/assets/faces/d13.mp4")
    ap.add_argument("--persona-dir", type=Path, action="append", default=[],
                    help="a persona folder to switch to (repeatable); default: an untrained one")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    ap.add_argument("--no-switch", action="store_true", help="no persona or layout switches (to tell causes apart)")
    ap.add_argument("--no-unplug", action="store_true", help="no camera losses")
    ap.add_argument("--cache-dir", type=Path, help="keep the compiled generators here between runs "
                    "(default: in the temporary folder)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="f2f-soak-"))
    for var in ("DATA", "CONFIG", "CACHE", "RUNTIME", "LOG"):
        os.environ[f"F2F_CAM_{var}_DIR"] = str(tmp / var.lower())
    if args.cache_dir:
        os.environ["F2F_CAM_CACHE_DIR"] = str(args.cache_dir)

    import pyvirtualcam

    from f2f_cam.config import DaemonConfig, PipelineConfig
    from f2f_cam.daemon import Daemon

    names = setup(tmp, args.persona_dir)
    Recorder.keep_thumbs = False  # 20,000 thumbnails would be the memory growth measured
    pyvirtualcam.register_backend("recorder", Recorder)
    d = Daemon(DaemonConfig(camera=str(args.video), output="virtualcam", backend="recorder", size="1280x720",
                            fps=30, tray=False, retry_seconds=0.5),
               PipelineConfig(persona=names[0], layout="persona"),
               open_source=lambda: Unpluggable(args.video)).start()
    rec = Recorder.last
    t0 = time.monotonic()
    try:
        events, samples = drive(d, rec, names, args.frames, args.video, not args.no_switch, not args.no_unplug)
        summary = d.summary()
    finally:
        d.stop()
    return report(args, rec, events, samples, summary, time.monotonic() - t0)


def report(args, rec, events, samples, summary, seconds) -> int:
    gaps = np.diff(np.array(rec.times))
    # The first full cycle against the last, each by its largest sample: a thread or a
    # socket that lives for a moment (a control connection, the camera reopening) is
    # not growth.
    first = [s for s in samples if CYCLE <= s["frame"] < 2 * CYCLE] or samples[:1]
    tail = [s for s in samples if s["frame"] >= samples[-1]["frame"] - CYCLE]
    base = {k: max(s[k] for s in first) for k in ("rss_mb", "threads", "fds")}
    last = {k: max(s[k] for s in tail) for k in ("rss_mb", "threads", "fds")}
    figures = {
        "frames": len(rec.times), "seconds": round(seconds, 1), "fps": round((len(rec.times) - 1) / seconds, 2),
        "max_gap_ms": round(float(gaps.max()) * 1e3, 1), "gap_p99_ms": round(float(np.percentile(gaps, 99)) * 1e3, 1),
        "gaps_over_100ms": int((gaps > 0.1).sum()), "cycles": len(events),
        # Where the long gaps were (frame, wall-clock time, ms): to set beside events and the machine's load.
        "long_gaps": [{"frame": int(i + 1), "at": time.strftime("%H:%M:%S", time.localtime(
            time.time() - (time.monotonic() - rec.times[i + 1]))), "ms": round(float(gaps[i]) * 1e3, 1)}
            for i in np.flatnonzero(gaps > 0.1)[:20]],
        "rss_mb_start": round(base["rss_mb"], 1), "rss_mb_end": round(last["rss_mb"], 1),
        "rss_mb_peak": round(max(s["rss_mb"] for s in samples), 1),
        "rss_growth_mb": round(last["rss_mb"] - base["rss_mb"], 1),
        "threads_start": base["threads"], "threads_end": last["threads"],
        "threads_growth": last["threads"] - base["threads"],
        "fds_start": base["fds"], "fds_end": last["fds"], "fds_growth": last["fds"] - base["fds"],
        "dropped": summary["dropped"], "processed_fps": round(summary["processed_fps"], 2),
        "latency_ms": summary["latency_ms"], "video": str(args.video), "switch_s_max": max(
            (e["switch_s"] for e in events), default=None),
    }
    failures = [f"{k} {figures[k]} > {limit}" for k, limit in LIMITS.items() if figures[k] > limit]
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "events": events, "samples": samples}, indent=1))
    for f in failures:
        print("FAILED:", f)
    print("all checks passed" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
