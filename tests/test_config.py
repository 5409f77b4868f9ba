"""Settings validate themselves: PipelineConfig and DaemonConfig refuse a bad value in
``__post_init__`` with one line naming the setting, the value and what it takes, the
same from code, ``config.toml`` and the command line (run through the real console
script), before anything is opened or written."""

from __future__ import annotations

import math

import pytest

from conftest import run_cli
from tests_helpers import one_line_error
from f2f_cam import paths
from f2f_cam.config import DaemonConfig, PipelineConfig, SettingError, load_config, merge
from f2f_cam.errors import UserError

# -- the dataclasses, built directly ------------------------------------------------------


def test_defaults_are_valid():
    assert PipelineConfig().layout == "persona" and DaemonConfig().frame_size == (1280, 720)


def test_values_are_normalised():
    d = DaemonConfig(camera=1, size="640X480", fps=25, retry_seconds=2)
    assert (d.camera, d.size, d.frame_size, d.fps, d.retry_seconds) == ("1", "640x480", (640, 480), 25.0, 2.0)
    assert isinstance(d.fps, float)


@pytest.mark.parametrize("cls, field, value", [
    (DaemonConfig, "camera", "/dev/video2"), (DaemonConfig, "camera", "clip.mp4"), (DaemonConfig, "output", "window"),
    (DaemonConfig, "output", "out.mkv"), (DaemonConfig, "backend", "recorder"), (DaemonConfig, "device", "/dev/video9"),
    (DaemonConfig, "mirror", None), (DaemonConfig, "mirror", False), (DaemonConfig, "fps", 1), (DaemonConfig, "fps", 240),
    (PipelineConfig, "persona", "tiny"), (PipelineConfig, "device", "cuda:1"), (PipelineConfig, "layout", "camera"),
    (PipelineConfig, "beta", 0), (PipelineConfig, "precision", "bf16"), (PipelineConfig, "retarget", "raw"),
])
def test_good_values_are_kept(cls, field, value):
    assert getattr(cls(**{field: value}), field) == value


BAD = [  # (class, field, value, words the message must have besides the name and the value)
    (DaemonConfig, "fps", "fast", "a number from 1 to 240"),  # a TOML string where a number goes
    (DaemonConfig, "fps", True, "a number from 1 to 240"),  # bool is an int in Python: refused anyway
    (DaemonConfig, "fps", 0, "a number from 1 to 240"),
    (DaemonConfig, "fps", 241.0, "a number from 1 to 240"),
    (DaemonConfig, "fps", math.nan, "a number from 1 to 240"),
    (DaemonConfig, "retry_seconds", 0, "above 0"),
    (PipelineConfig, "min_cutoff", 0.0, "above 0"),
    (PipelineConfig, "min_cutoff", math.inf, "above 0"),
    (PipelineConfig, "beta", -0.1, "at least 0"),
    (PipelineConfig, "layout", "grid", "choose one of: persona, side-by-side, landmarks, camera"),
    (PipelineConfig, "layout", ["persona"], "choose one of"),  # unhashable, as TOML can give
    (PipelineConfig, "retarget", "warp", "choose one of: expression, raw, align, transfer"),
    (PipelineConfig, "precision", "fp16", "choose one of: auto, fp32, bf16"),
    (PipelineConfig, "device", "auto", "choose one of: cpu, cuda, mps"),  # the generator needs a real one
    (PipelineConfig, "device", "gpu", "choose one of"),
    (PipelineConfig, "smoothing", "yes", "true or false"),
    (PipelineConfig, "smoothing", 1, "true or false"),
    (PipelineConfig, "mirror", None, "true or false"),
    (DaemonConfig, "mirror", "yes", "true or false, or leave it out"),
    (DaemonConfig, "tray", 0, "true or false"),
    (DaemonConfig, "size", "big", "WIDTHxHEIGHT"),
    (DaemonConfig, "size", "8x8", "at least 16 px"),
    (DaemonConfig, "size", 1280, "WIDTHxHEIGHT"),
    (DaemonConfig, "size", "1281x720", "width must be even (Chrome and video files refuse odd sizes); use 1280x720"),
    (DaemonConfig, "size", "1280x719", "height must be even"),
    (DaemonConfig, "camera", -1, "webcam index"),
    (DaemonConfig, "camera", True, "webcam index"),
    (DaemonConfig, "camera", "", "webcam index"),
    (DaemonConfig, "output", "nowhere", "virtualcam, window or a file"),
    (DaemonConfig, "output", 3, "virtualcam, window or a file"),
    (DaemonConfig, "backend", "", "virtual camera backend"),
    (DaemonConfig, "device", " ", "or leave it out"),
    (PipelineConfig, "persona", "", "persona name"),
    (PipelineConfig, "persona", 3, "persona name"),
]


@pytest.mark.parametrize("cls, field, value, words", BAD)
def test_bad_value_is_refused_in_one_line(cls, field, value, words):
    with pytest.raises(SettingError) as e:
        cls(**{field: value})
    msg = str(e.value)
    assert msg.startswith(f"invalid setting {cls.SECTION}.{field} = {value!r}: ") and words in msg, msg
    assert "\n" not in msg and isinstance(e.value, UserError)


def test_merge_checks_overrides_and_skips_none():
    assert merge(DaemonConfig(fps=20), fps=None, size="320X180") == DaemonConfig(fps=20, size="320x180")
    with pytest.raises(SettingError, match=r"^invalid setting daemon\.fps = 0\.0: a number from 1 to 240$"):
        merge(DaemonConfig(), fps=0.0)


# -- config.toml, loaded in process -------------------------------------------------------

def write_config(text: str):
    path = paths.config_file()  # in the F2F_CAM_CONFIG_DIR of the autouse fixture
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_config_file_values_are_checked_and_normalised():
    path = write_config('[daemon]\ncamera = 0\nsize = "640X480"\nfps = 24\nmirror = true\n'
                        '[pipeline]\nlayout = "camera"\nsmoothing = false\n')
    d = load_config(path, "daemon", DaemonConfig)
    assert (d.camera, d.size, d.fps, d.mirror) == ("0", "640x480", 24.0, True)
    assert load_config(path) == PipelineConfig(layout="camera", smoothing=False)


@pytest.mark.parametrize("section, text, where", [
    ("daemon", 'fps = "fast"', "[daemon] fps = 'fast': a number from 1 to 240"),
    ("daemon", "fps = true", "[daemon] fps = True: a number from 1 to 240"),
    ("pipeline", 'layout = "grid"', "[pipeline] layout = 'grid': unknown layout 'grid'; choose one of:"),
])
def test_config_file_error_says_where(section, text, where):
    path = write_config(f"[{section}]\n{text}\n")
    cls = DaemonConfig if section == "daemon" else PipelineConfig
    with pytest.raises(UserError) as e:
        load_config(path, section, cls)
    assert str(e.value).startswith(f"config file {path}: {where}"), str(e.value)


def test_config_section_that_is_not_a_table():
    path = write_config("daemon = 3\n")
    with pytest.raises(UserError, match="daemon must be a table"):
        load_config(path, "daemon", DaemonConfig)


# -- through the console script, as a user types it ---------------------------------------


def written_files(*folders) -> list:
    return sorted(p for f in folders for p in f.rglob("*") if p.is_file())


# The input does not exist: a setting error (not "no such file") shows that the settings
# are checked before the input is opened. `run` must fail before its lock, log or output.
RUN = ("run", "--no-tray", "--camera", "{tmp}/missing.mp4", "--output", "{tmp}/o.mp4")
VIDEO = ("video", "{tmp}/missing.mp4", "-o", "{tmp}/o.mp4", "--quiet")


@pytest.mark.parametrize("kind, toml, args, words", [
    ("number", '[daemon]\nfps = "fast"\n', RUN, ["[daemon] fps = 'fast'", "from 1 to 240"]),
    ("number", "[pipeline]\nbeta = -1\n", VIDEO, ["[pipeline] beta = -1", "at least 0"]),
    ("choice", '[pipeline]\nlayout = "grid"\n', VIDEO, ["[pipeline] layout = 'grid'", "choose one of: persona"]),
    ("choice", '[pipeline]\nretarget = "warp"\n', RUN, ["[pipeline] retarget = 'warp'", "expression, raw, align, transfer"]),
    ("size", '[daemon]\nsize = "big"\n', RUN, ["[daemon] size = 'big'", "WIDTHxHEIGHT"]),
    ("size", '[daemon]\nsize = "1281x721"\n', RUN, ["[daemon] size = '1281x721'", "width and height must be even"]),
    ("boolean", '[daemon]\ntray = "no"\n', RUN, ["[daemon] tray = 'no'", "true or false"]),
    ("boolean", "[pipeline]\nsmoothing = 1\n", VIDEO, ["[pipeline] smoothing = 1", "true or false"]),
    ("optional string", "[pipeline]\npersona = 3\n", VIDEO, ["[pipeline] persona = 3", "persona name"]),
    ("optional string", '[daemon]\ndevice = ""\n', RUN, ["[daemon] device = ''", "virtual camera device"]),
])
def test_bad_config_file_setting(isolated_dirs, tmp_path, kind, toml, args, words):
    config = write_config(toml)
    proc = run_cli(*(a.format(tmp=tmp_path) for a in args))
    one_line_error(proc, f"config file {config}: ", *words)
    assert proc.returncode == 1
    assert written_files(isolated_dirs, tmp_path) == [config]  # no lock, log or output


@pytest.mark.parametrize("kind, args, words, code", [
    ("number", RUN + ("--fps", "0"), ["invalid setting daemon.fps = 0.0", "from 1 to 240"], 1),
    ("number", RUN + ("--fps", "fast"), ["--fps", "'fast'"], 2),  # click's float type says it
    ("choice", VIDEO + ("--layout", "grid"), ["invalid setting pipeline.layout = 'grid'", "side-by-side"], 1),
    ("choice", VIDEO + ("--device", "auto"), ["invalid setting pipeline.device = 'auto'", "cpu, cuda, mps"], 1),
    ("choice", ("bench", "--precision", "fp16"),
     ["invalid setting pipeline.precision = 'fp16'", "choose one of: auto, fp32, bf16"], 1),
    ("size", RUN + ("--size", "8x8"), ["invalid setting daemon.size = '8x8'", "at least 16 px"], 1),
    ("size", RUN + ("--size", "1281x720"), ["invalid setting daemon.size = '1281x720'", "width must be even",
                                            "use 1280x720"], 1),
    ("size", VIDEO + ("--size", "big"), ["invalid size 'big'", "WIDTHxHEIGHT"], 1),
    ("boolean", VIDEO + ("--no-smoothing=yes",), ["--no-smoothing", "does not take a value"], 2),  # a flag
    ("optional string", VIDEO + ("--persona", ""), ["invalid setting pipeline.persona = ''", "persona name"], 1),
    ("optional string", RUN + ("--device", ""), ["invalid setting daemon.device = ''"], 1),
])
def test_bad_command_line_setting(isolated_dirs, tmp_path, kind, args, words, code):
    proc = run_cli(*(a.format(tmp=tmp_path) for a in args))
    one_line_error(proc, *words)
    assert proc.returncode == code
    assert written_files(isolated_dirs, tmp_path) == []
