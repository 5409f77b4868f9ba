"""Offline mode (the old run_video.py): a video file through the pipeline to a file.

Output at the input's frame rate, each frame at its input frame's time (a variable-rate
input keeps in step with its audio), the audio track copied.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from f2f_cam.compositor import side_by_side_size
from f2f_cam.config import PipelineConfig, even_size
from f2f_cam.errors import UserError

log = logging.getLogger(__name__)


def default_size(layout: str, camera_size: tuple[int, int]) -> tuple[int, int]:
    """The input's size, or camera | sketch | face at the input's height."""
    return side_by_side_size(camera_size) if layout == "side-by-side" else camera_size


def convert_video(input_path: str | Path, output_path: str | Path, cfg: PipelineConfig,
                  size: tuple[int, int] | None = None, progress: bool = True) -> dict:
    """Run ``input_path`` through the pipeline into ``output_path``; returns a summary."""
    from tqdm import tqdm

    from f2f_cam import flow
    from f2f_cam.pipeline import build_pipeline
    from f2f_cam.sinks import open_sink
    from f2f_cam.sources import ended_early, open_source

    input_path, output_path = Path(input_path), Path(output_path)
    t0 = time.monotonic()
    with open_source(input_path) as src:
        if output_path.exists() and output_path.resolve() == input_path.resolve():
            raise UserError("the output would overwrite the input; choose another -o path")
        out_size = even_size(size or default_size(cfg.layout, src.size))
        if min(out_size) < 16:
            raise UserError(f"output size {out_size[0]}x{out_size[1]} is too small")
        with build_pipeline(cfg, out_size) as pipe, \
                open_sink(output_path, out_size, src.fps, audio_from=input_path if src.has_audio else None) as sink, \
                tqdm(total=src.frame_count or None, unit="frame", disable=not progress,
                     desc=output_path.name, dynamic_ncols=True) as bar:
            def tick(_t: float) -> None:
                bar.update(1)
                if pipe.stats.frames % 10 == 0:
                    bar.set_postfix(faces=f"{pipe.stats.faces / pipe.stats.frames:.0%}", refresh=False)

            flow.run(src, pipe, sink, on_frame=tick, overlap=True)
            stats = pipe.stats
            if stats.frames == 0:
                raise UserError(f"{input_path} has no video frames")
            if pipe.detector is not None and stats.faces == 0:
                raise UserError(f"no face found in any frame of {input_path}; use a video where a face "
                                "is clearly visible (frontal, lit, not too small)")
            persona = pipe.persona
            # A download cut short still converts: the frames that decode, and a note.
            short = ended_early(input_path, stats.frames, src.frame_count)
    summary = {
        "input": str(input_path), "output": str(output_path),
        "persona": persona.name if persona else None, "layout": cfg.layout,
        "frames": stats.frames, "frames_with_face": stats.faces, "frames_expected": src.frame_count,
        "warning": f"{short}; {output_path} has the {stats.frames} that decoded" if short else None,
        "size": list(out_size), "fps": float(src.fps), "seconds": round(time.monotonic() - t0, 2),
        "stage_ms": stats.as_dict()["stage_ms"],
    }
    if short:
        log.warning(summary["warning"])
    log.info("video summary: %s", summary)
    return summary
