"""Settings: frozen dataclasses with defaults; the TOML config file loads into them.

Click options map one to one onto fields; a value the user typed beats the config
file, which beats the default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from f2f_cam.errors import UserError


@dataclass(frozen=True)
class PipelineConfig:
    persona: str | None = None  # None: the user's first persona, else a bundled one
    layout: str = "persona"  # persona | side-by-side | landmarks | camera
    retarget: str = "align"  # raw | align | transfer: align works at any distance
    smoothing: bool = True  # One Euro filter on the landmarks: less jitter
    min_cutoff: float = 1.5  # One Euro: smoothing at rest (Hz); lower = smoother
    beta: float = 0.05  # One Euro: speed coefficient; higher = less lag in motion
    mirror: bool = False  # flip the camera image like a mirror (webcams only)
    device: str = "cpu"  # where the generator runs: cpu | cuda | mps
    precision: str = "auto"  # generator: auto (bf16 where native, ~2x on such CPUs) | fp32 | bf16


@dataclass(frozen=True)
class DaemonConfig:
    """``f2f-cam run`` ([daemon] in config.toml); persona, layout, retarget and the like
    come from [pipeline]."""

    camera: str = "0"  # webcam index, /dev/videoN, or a video file (looped, in real time)
    output: str = "virtualcam"  # virtualcam | window | FILE.mp4 (.mkv, .webm, ...)
    backend: str = "auto"  # auto | v4l2loopback | obs | unitycapture
    device: str | None = None  # virtual camera device; None: the "Face2Face Cam" one, else the default
    size: str = "1280x720"  # output WIDTHxHEIGHT: what video apps expect of an HD webcam
    fps: float = 30.0  # output frame rate; the last frame repeats when processing is slower
    mirror: bool | None = None  # None: mirror a webcam (what users expect), not a video file
    tray: bool = True  # tray icon; false runs headless (`f2f-cam ctl` works either way)
    retry_seconds: float = 1.0  # how often a lost camera is reopened


def load_config(path: Path, section: str = "pipeline", cls=PipelineConfig):
    """Read ``[section]`` of a TOML file into ``cls`` (defaults for missing keys)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    if not path.is_file():
        return cls()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8")).get(section, {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"config file {path} is not valid TOML ({e}); fix or delete it") from e
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"config file {path}: unknown key(s) in [{section}]: {', '.join(unknown)}; "
                        f"known: {', '.join(sorted(known))}")
    return cls(**data)


def merge(base, **overrides):
    """``base`` with every override that is not None."""
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


def parse_size(value: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720); at least 16 px a side."""
    try:
        w, h = (int(v) for v in str(value).lower().split("x"))
        if w < 16 or h < 16:
            raise ValueError
    except ValueError:
        raise UserError(f"invalid size '{value}'; write it as WIDTHxHEIGHT, e.g. 1280x720") from None
    return w, h
