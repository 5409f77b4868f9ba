"""Remake docs/preview.png: the preview window, its overlay and its help panel.

Starts a private Xvfb display and a daemon on the bundled driving clip with the
bundled persona (side by side, output to a throwaway file: no virtual camera needed,
and folders of its own: your personas and config stay out of it), turns the preview
on, presses H in the window and saves what the window shows.

    python scripts/preview_screenshot.py [OUT.png]    # default: docs/preview.png

Needs Xvfb and xdotool on PATH (apt-get install -y xvfb xdotool).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TITLE = "Face2Face Cam preview"
MAX_BYTES = 200_000  # the picture goes into the repository


def wait_until(predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            sys.exit(f"preview_screenshot: no {what} after {timeout:g} s")
        time.sleep(0.2)
    return value


def start_xvfb() -> tuple[subprocess.Popen, str]:
    r, w = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as f:
        return xvfb, ":" + f.readline().strip()


def window_id() -> str | None:
    out = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", TITLE], capture_output=True, text=True)
    return (out.stdout.split() or [None])[0]


def grab(display: str, wid: str):
    """The window as it is on screen, a PIL image."""
    from PIL import ImageGrab

    out = subprocess.run(["xdotool", "getwindowgeometry", "--shell", wid], capture_output=True, text=True).stdout
    geo = dict(line.split("=") for line in out.splitlines())
    x, y, w, h = (int(geo[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
    return ImageGrab.grab(bbox=(x, y, x + w, y + h), xdisplay=display).convert("RGB")


def save_small(img, path: Path) -> int:
    """PNG, quantized to a palette when the full colours would be over ``MAX_BYTES``."""
    img.save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:
        img.quantize(colors=256, dither=0).save(path, optimize=True)
    return path.stat().st_size


def main(out: Path) -> None:
    from f2f_cam.control import ControlClient, NotRunning

    scratch = tempfile.TemporaryDirectory(prefix="f2f-preview-shot-")
    tmp = Path(scratch.name)
    for var in ("DATA", "CONFIG", "CACHE", "RUNTIME", "LOG"):
        os.environ[f"F2F_CAM_{var}_DIR"] = str(tmp / var.lower())
    os.environ["F2F_CAM_COMPILE"] = "0"  # a screenshot does not need the compiled generator
    xvfb, display = start_xvfb()
    os.environ["DISPLAY"] = display
    exe = Path(sys.executable).with_name("f2f-cam")
    daemon = subprocess.Popen([str(exe), "run", "--no-tray", "--camera", str(ROOT / "models/demo/drive.mp4"),
                               "--output", str(tmp / "out.mp4"), "--layout", "side-by-side", "--size", "640x360",
                               "--fps", "15", "--seconds", "120"])
    try:
        def status():
            try:
                return ControlClient(timeout=2).request("status")["status"]
            except NotRunning:
                return None

        wait_until(lambda: (st := status()) and st["face"] and st["frames_out"] > 30, "daemon with a face")
        ControlClient().request("preview", "on")
        wid = wait_until(window_id, "preview window")
        time.sleep(2)  # a few frames in, and the overlay has the daemon's status
        subprocess.run(["xdotool", "key", "--window", wid, "h"], check=True, stderr=subprocess.DEVNULL)
        time.sleep(1)
        size = save_small(grab(display, wid), out)
        print(f"wrote {out} ({size // 1000} KB)")
        ControlClient().request("quit")
        daemon.wait(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        xvfb.terminate()
        xvfb.wait(timeout=5)
        scratch.cleanup()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "preview.png")
