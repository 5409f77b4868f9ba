"""``f2f-cam demo``: the bundled driving clip through the bundled persona.

Works on a fresh install with no webcam and no training: driver | sketch | persona,
side by side, written to a video (and shown in a window where there is a display).
The driver is a generated face with another face shape than the persona's (wider,
eyes further apart, a longer nose), so the demo shows the persona keeping its own
face while it takes the driver's expressions.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from f2f_cam import paths
from f2f_cam.atomic import write_bytes
from f2f_cam.config import PipelineConfig
from f2f_cam.errors import UserError

log = logging.getLogger(__name__)

DEMO_PERSONA = "astronaut"
DRIVING_CLIP = "drive.mp4"


def driving_clip() -> Path:
    clip = paths.bundled_models_dir() / "demo" / DRIVING_CLIP
    if not clip.is_file():
        raise UserError(f"the demo clip is missing ({clip}); reinstall f2f-cam")
    return clip


def run_demo(output: Path, persona: str | None = None, picture: Path | None = None,
             progress: bool = True) -> dict:
    """Write the side-by-side demo video; optionally a PNG strip of three moments."""
    from f2f_cam.persona import PersonaStore
    from f2f_cam.video import convert_video

    store = PersonaStore()
    if persona is not None:
        name = store.get(persona).name  # an unknown name fails with the list of personas
    elif DEMO_PERSONA in store.names():
        name = DEMO_PERSONA
    else:
        raise UserError(f"the demo persona '{DEMO_PERSONA}' is not installed ({store.bundled_root}); "
                        "reinstall f2f-cam")
    # A persona without an expression model (format 1) is driven with `transfer`
    # outright rather than with the fallback note on every demo.
    retarget = "expression" if store.get(name).expression is not None else "transfer"
    cfg = PipelineConfig(persona=name, layout="side-by-side", retarget=retarget)
    summary = convert_video(driving_clip(), output, cfg, progress=progress)
    if picture is not None:
        write_strip(output, picture)
        summary["picture"] = str(picture)
    return summary


def write_strip(video: Path, picture: Path, moments: int = 3, width: int = 960) -> Path:
    """Stack ``moments`` evenly spaced frames of ``video`` into one PNG."""
    import av
    import cv2

    with av.open(str(video)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    picks = [frames[int(i)] for i in np.linspace(len(frames) * 0.15, len(frames) * 0.85, moments)]
    h, w = picks[0].shape[:2]
    rows = [cv2.resize(f, (width, round(h * width / w)), interpolation=cv2.INTER_AREA) for f in picks]
    strip = np.concatenate(rows, 0)
    # Encoded, then written: a failed write raises (a full disk: DiskFull's one line), where
    # cv2.imwrite returns False and prints libpng's "Write Error".
    ok, data = cv2.imencode(Path(picture).suffix or ".png", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    if not ok:
        raise UserError(f"cannot write {picture}: OpenCV cannot encode a {Path(picture).suffix} picture")
    write_bytes(picture, data.tobytes())
    return picture


def play(video: Path) -> None:
    """Show a video in a preview window at its frame rate (q, Esc or closing it stops)."""
    from f2f_cam import flow
    from f2f_cam.sinks import open_sink
    from f2f_cam.sources import VideoFileSource, in_real_time

    with VideoFileSource(video) as src, open_sink("window", src.size, src.fps, title="Face2Face Cam demo") as win:
        flow.run(in_real_time(src), None, win)
