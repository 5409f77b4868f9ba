"""Settings: frozen dataclasses with defaults; the TOML config file loads into them.

Click options map one to one onto fields; a value the user typed beats the config
file, which beats the default. Each dataclass checks every field in ``__post_init__``,
so the command line, ``config.toml`` and code that builds one get the same one-line
error for the same bad value (``invalid setting daemon.fps = 0.0: a number from 1 to
240``; from the file: ``config file PATH: [daemon] fps = 'fast': ...``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

from f2f_cam.errors import UserError
from f2f_cam.registry import LAYOUTS, PRECISIONS, RETARGET_MODES, STUDENT_MODES, check_device

class SettingError(UserError):
    """A setting with a bad value. The one place its line is worded: ``where`` is
    ``invalid setting daemon.fps`` by default, ``config file PATH: [daemon] fps`` from a file."""

    def __init__(self, section: str, key: str, value: Any, wanted: str, where: str | None = None):
        self.section, self.key, self.value, self.wanted = section, key, value, wanted
        super().__init__(self.line(where or f"invalid setting {section}.{key}"))

    def line(self, where: str) -> str:
        return f"{where} = {self.value!r}: {self.wanted}"


class _Refused(Exception):
    """A checker's refusal; its message says what the setting takes."""


# -- checkers: value -> the value to store, or _Refused(what the setting takes) ------

def _number(lo: float, hi: float | None = None, *, above: bool = False, unit: str = "number") -> Callable:
    """A finite int or float (not a bool: ``True`` is an int in Python) in range."""
    wanted = (f"a {unit} from {lo:g} to {hi:g}" if hi is not None
              else f"a {unit} above {lo:g}" if above else f"a {unit} of at least {lo:g}")

    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or v < lo or (above and v == lo) or (hi is not None and v > hi):
            raise _Refused(wanted)
        return float(v)
    return check


def _flag(*, optional: bool = False) -> Callable:
    def check(v):
        if isinstance(v, bool) or (optional and v is None):
            return v
        raise _Refused("true or false" + (", or leave it out" if optional else ""))
    return check


def _text(wanted: str, *, optional: bool = False) -> Callable:
    """A non-blank string (``None`` too when optional: the default applies)."""
    def check(v):
        if (optional and v is None) or (isinstance(v, str) and v.strip()):
            return v
        raise _Refused(wanted + (", or leave it out" if optional else ""))
    return check


def _registered(check_name: Callable[[Any], str]) -> Callable:
    """A name a registry knows. The registry words the refusal (``unknown layout 'foo';
    choose one of: ...``): the same line the tray and ``ctl`` give, and one copy of it."""
    def check(v):
        try:
            return check_name(v)
        except UserError as e:
            raise _Refused(str(e)) from None
    return check


def _size(v):
    try:
        w, h = parse_size(v)  # words its own error: "invalid size 'big'; write it as ..."
    except UserError as e:
        raise _Refused(str(e)) from None
    odd = [side for side, n in (("width", w), ("height", h)) if n % 2]
    if odd:  # Chrome/WebRTC refuse the device's frames, and H.264 in yuv420p cannot encode them
        raise _Refused(f"{' and '.join(odd)} must be even (Chrome and video files refuse odd sizes); "
                       "use {}x{}".format(*even_size((w, h))))
    return f"{w}x{h}"


def _camera(v):
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return str(v)  # camera = 0 in TOML: the same as "0"
    if isinstance(v, str) and v.strip():
        return v
    raise _Refused("a webcam index (0, 1, ...), /dev/videoN, or a video file")


def _output(v):
    if isinstance(v, str) and (v in ("virtualcam", "window") or Path(v).suffix):
        return v
    raise _Refused(f"unknown output {v!r}; use virtualcam, window or a file such as out.mp4")


def _validate(cfg, checks: dict[str, Callable]) -> None:
    """Run each field's checker; store what it returns (normalised: "1280X720" ->
    "1280x720", 30 -> 30.0); the first refusal is a SettingError."""
    for name, check in checks.items():
        value = getattr(cfg, name)
        try:
            object.__setattr__(cfg, name, check(value))  # frozen: only here, while it is built
        except _Refused as e:
            raise SettingError(cfg.SECTION, name, value, str(e)) from None


@dataclass(frozen=True)
class PipelineConfig:
    SECTION: ClassVar[str] = "pipeline"

    persona: str | None = None  # None: the user's first persona, else a bundled one
    layout: str = "persona"  # persona | side-by-side | landmarks | camera
    retarget: str = "expression"  # expression | raw | align | transfer: expression keeps the persona's own face
    smoothing: bool = True  # One Euro filters on the landmarks (and expression's scores and head turn): less jitter
    min_cutoff: float = 1.5  # the landmarks' One Euro: smoothing at rest (Hz); lower = smoother
    beta: float = 0.05  # the landmarks' One Euro: speed coefficient; higher = less lag in motion
    mirror: bool = False  # flip the camera image like a mirror (webcams only)
    device: str = "cpu"  # where the generator runs: cpu | cuda | mps
    precision: str = "auto"  # generator: auto (bf16 where native, ~2x on such CPUs) | fp32 | bf16
    compile: bool = True  # run the generator compiled for this CPU (made once in the background, cached)
    student: str = "auto"  # auto | always | never: a persona's real-time student where its generator is too slow

    def __post_init__(self) -> None:
        _validate(self, {
            "persona": _text("a persona name (see `f2f-cam personas list`)", optional=True),
            "layout": _registered(LAYOUTS.check),
            "retarget": _registered(RETARGET_MODES.check),
            "smoothing": _flag(),
            "min_cutoff": _number(0, above=True, unit="frequency in Hz"),
            "beta": _number(0),
            "mirror": _flag(),
            # The generator needs a concrete device: "auto" is for training.
            "device": _registered(lambda v: check_device(v, allow_auto=False)),
            "precision": _registered(PRECISIONS.check),
            "compile": _flag(),
            "student": _registered(STUDENT_MODES.check),
        })


@dataclass(frozen=True)
class DaemonConfig:
    """``f2f-cam run`` ([daemon] in config.toml); persona, layout, retarget and the like
    come from [pipeline]."""

    SECTION: ClassVar[str] = "daemon"

    camera: str = "0"  # webcam index, /dev/videoN, or a video file (looped, in real time)
    output: str = "virtualcam"  # virtualcam | window | FILE.mp4 (.mkv, .webm, ...)
    backend: str = "auto"  # auto | v4l2loopback | obs | unitycapture
    device: str | None = None  # virtual camera device; None: the "Face2Face Cam" one, else the default
    size: str = "1280x720"  # output WIDTHxHEIGHT: what video apps expect of an HD webcam
    fps: float = 30.0  # output frame rate; the last frame repeats when processing is slower
    mirror: bool | None = None  # None: mirror a webcam (what users expect), not a video file
    tray: bool = True  # tray icon; false runs headless (`f2f-cam ctl` works either way)
    retry_seconds: float = 1.0  # how often a lost camera, or a virtual camera that failed, is reopened

    def __post_init__(self) -> None:
        _validate(self, {
            "camera": _camera,
            "output": _output,
            # Only the shape: the sink checks the name (a test may register its own backend).
            "backend": _text("a virtual camera backend such as auto or v4l2loopback"),
            "device": _text("a virtual camera device such as /dev/video10", optional=True),
            "size": _size,
            "fps": _number(1, 240),
            "mirror": _flag(optional=True),
            "tray": _flag(),
            "retry_seconds": _number(0, above=True, unit="number of seconds"),
        })

    @property
    def frame_size(self) -> tuple[int, int]:
        """``size`` as (width, height) in pixels."""
        return parse_size(self.size)


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
    except OSError as e:
        raise UserError(f"cannot read config file {path}: {e.strerror or e}") from e
    if not isinstance(data, dict):
        raise UserError(f"config file {path}: {section} must be a table ([{section}] with keys under it)")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"config file {path}: unknown key(s) in [{section}]: {', '.join(unknown)}; "
                        f"known: {', '.join(sorted(known))}")
    try:
        return cls(**data)
    except SettingError as e:  # the same error, its line naming the file
        raise SettingError(e.section, e.key, e.value, e.wanted, f"config file {path}: [{section}] {e.key}") from None


def merge(base, **overrides):
    """``base`` with every override that is not None (checked like the rest)."""
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


def even_size(size: tuple[int, int]) -> tuple[int, int]:
    """Each side rounded down to even: what H.264 in yuv420p and Chrome take."""
    return size[0] - size[0] % 2, size[1] - size[1] % 2


def parse_size(value: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720); at least 16 px a side."""
    try:
        w, h = (int(v) for v in str(value).lower().split("x"))
        if w < 16 or h < 16:
            raise ValueError
    except ValueError:
        raise UserError(f"invalid size '{value}'; write it as WIDTHxHEIGHT, e.g. 1280x720 (at least 16 px a side)") from None
    return w, h
