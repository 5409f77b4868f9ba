"""The tray: menu logic with pystray's dummy backend; the real icon under Xvfb + trayer."""

import contextlib
import importlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tests_helpers import skip_unless

from f2f_cam import tray as tray_mod
from f2f_cam.tray import STATE_COLORS, Tray, draw_icon, icon_state, make_tray

from conftest import run_cli
from test_daemon import StillCamera, daemons, second_persona  # noqa: F401 (fixtures)
from test_virtualcam import recorder  # noqa: F401 (the fixture)


@pytest.fixture
def dummy_pystray(monkeypatch):
    """pystray with its dummy backend: menus work, nothing is shown."""
    monkeypatch.setenv("PYSTRAY_BACKEND", "dummy")
    import pystray

    if pystray.Icon.__module__ != "pystray._base":  # imported before with another backend
        pystray = importlib.reload(pystray)
    return pystray


def items(menu) -> dict:
    return {i.text: i for i in menu if i.text != "- - - -"}


def test_menu_calls_the_daemon(dummy_pystray, installed_persona, second_persona, recorder, daemons,
                               monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    d = daemons("0", layout="camera", persona="tiny", open_source=StillCamera)
    tray = Tray(d, background=False)
    icon = tray.icon
    top = items(icon.menu)
    assert list(top) == ["Persona", "Layout", "Show preview window", "Show landmarks", "Calibrate neutral face",
                         "Pause", "Mirror", "Open personas folder", "Quit"]

    def personas():
        return [(i.text, i.checked, i.radio) for i in top["Persona"].submenu]

    def layouts():
        return {i.text: i.checked for i in top["Layout"].submenu}

    # Persona: radio items, the current one checked; a click switches.
    assert personas() == [("tiny", True, True), ("tiny2", False, True)]
    items(top["Persona"].submenu)["tiny2"](icon)
    assert d.status().persona == "tiny2"
    assert personas() == [("tiny", False, True), ("tiny2", True, True)]

    # Layout.
    assert layouts() == {"Persona": False, "Side by side": False, "Landmarks": False, "Camera (passthrough)": True}
    items(top["Layout"].submenu)["Side by side"](icon)
    assert d.status().layout == "side-by-side" and layouts()["Side by side"]
    items(top["Layout"].submenu)["Camera (passthrough)"](icon)

    # Show landmarks: on, then back to the layout before.
    top["Show landmarks"](icon)
    assert d.status().layout == "landmarks" and top["Show landmarks"].checked
    top["Show landmarks"](icon)
    assert d.status().layout == "camera" and not top["Show landmarks"].checked

    # Pause and the icon's state.
    assert tray._state == "running"
    top["Pause"](icon)
    assert d.status().paused and top["Pause"].checked
    assert icon_state(d) == "paused" and tray._state == "paused"  # refreshed after the action
    top["Pause"](icon)
    assert not d.status().paused and tray._state == "running"

    mirrored = d.status().mirror
    assert mirrored is True and top["Mirror"].checked  # camera "0" is a webcam: mirrored by default
    top["Mirror"](icon)
    assert d.status().mirror is False and not top["Mirror"].checked

    # Refusals reach the user as a warning, and the tray carries on.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="f2f_cam.tray"):
        top["Calibrate neutral face"](icon)
        top["Show preview window"](icon)
    text = caplog.text
    assert "does not track the face" in text and "no display to open a preview window" in text
    assert not top["Show preview window"].checked and top["Show preview window"].default

    top["Quit"](icon)
    assert not d.running


def test_menu_is_rebuilt_only_when_what_it_shows_changes(dummy_pystray, installed_persona, recorder, daemons,
                                                          monkeypatch):
    """The tray refreshes every half second; rebuilding the menu each time closed open
    submenus on StatusNotifierItem hosts (1 submenu click in 9 reached the daemon)."""
    d = daemons("0", layout="camera", persona="tiny", open_source=StillCamera)
    tray = Tray(d, background=False)
    rebuilt = []
    monkeypatch.setattr(tray.icon, "update_menu", lambda: rebuilt.append(d.status().layout))
    tray._shown = True  # as when the icon's loop runs
    for _ in range(4):
        tray.refresh()
    assert rebuilt == ["camera"]  # the first refresh only
    d.set_layout("persona")
    tray.refresh()
    tray.refresh()
    assert rebuilt == ["camera", "persona"]
    d.set_paused(True)
    tray.refresh()
    assert len(rebuilt) == 3 and "paused" in tray.icon.title.lower()


def test_tray_without_menus_points_to_ctl(dummy_pystray, recorder, daemons, monkeypatch, caplog):
    d = daemons("0", layout="camera", persona=None, open_source=StillCamera)
    monkeypatch.setenv("DISPLAY", ":99")  # dummy backend: nothing connects to it
    monkeypatch.setattr(dummy_pystray.Icon, "HAS_MENU", False)
    with caplog.at_level(logging.WARNING, logger="f2f_cam.tray"):
        tray = make_tray(d)
    assert isinstance(tray, Tray)
    assert "shows no menus" in caplog.text and "f2f-cam ctl" in caplog.text
    # No persona installed: the submenu says so.
    assert [i.text for i in items(tray.icon.menu)["Persona"].submenu] == ["(none installed)"]


def test_no_display_runs_headless(monkeypatch, caplog):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with caplog.at_level(logging.WARNING, logger="f2f_cam.tray"):
        assert make_tray(object()) is None
    assert "no display" in caplog.text and "running headless" in caplog.text


def test_icon_per_state():
    images = {s: draw_icon(s) for s in STATE_COLORS}
    assert all(im.size == (64, 64) and im.mode == "RGBA" for im in images.values())
    assert len({im.tobytes() for im in images.values()}) == len(images)  # each state looks different


def test_importing_f2f_cam_never_imports_pystray():
    code = ("import f2f_cam.cli, f2f_cam.daemon, f2f_cam.tray, f2f_cam.doctor, f2f_cam.cli_daemon, sys; "
            "bad = [m for m in ('pystray', 'torch', 'mediapipe') if m in sys.modules]; print(bad); "
            "assert not bad")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the real icon ------------------------------------------------------------------------

XVFB, TRAYER = shutil.which("Xvfb"), shutil.which("trayer")


@pytest.fixture
def x_display_with_tray():
    """A private Xvfb display with Debian's trayer as its system tray."""
    skip_unless(bool(XVFB and TRAYER), "needs Xvfb and trayer on PATH (apt-get install -y xvfb trayer)")
    r, w = os.pipe()
    xvfb = subprocess.Popen([XVFB, "-displayfd", str(w), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stderr=subprocess.DEVNULL)
    os.close(w)
    procs = [xvfb]
    try:
        with os.fdopen(r) as f:
            number = f.readline().strip()
        assert number, "Xvfb did not start"
        display = f":{number}"
        env = dict(os.environ, DISPLAY=display)
        deadline = time.monotonic() + 30  # a busy CI machine can be slow to start trayer
        trayer = None
        while not _has_tray(display):
            assert time.monotonic() < deadline, "trayer did not take the system tray selection"
            if trayer is None or trayer.poll() is not None:
                # trayer sometimes cannot open a display that Xvfb has only just announced: again.
                trayer = subprocess.Popen([TRAYER, "--edge", "top", "--align", "right", "--widthtype",
                                           "request", "--height", "24"], env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)
                procs.append(trayer)
            time.sleep(0.1)
        yield display
    finally:
        _stop_all(procs)


def _stop_all(procs) -> None:
    """Terminate what a fixture started, newest first (killed if it will not stop)."""
    for p in reversed(procs):
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()


def _has_tray(display: str) -> bool:
    import Xlib.display
    import Xlib.X

    d = Xlib.display.Display(display)
    try:
        return d.get_selection_owner(d.intern_atom("_NET_SYSTEM_TRAY_S0")) != Xlib.X.NONE
    finally:
        d.close()


def _windows(display: str) -> list[tuple[int, str]]:
    """(id, name) of every named window on the display."""
    import Xlib.display
    import Xlib.error

    d = Xlib.display.Display(display)
    found, todo = [], [d.screen().root]
    try:
        while todo:
            w = todo.pop()
            try:
                name = w.get_wm_name()
                todo.extend(w.query_tree().children)
            except Xlib.error.XError:  # windows come and go
                continue
            if name:
                found.append((w.id, name if isinstance(name, str) else name.decode("utf-8", "replace")))
    finally:
        d.close()
    return found


def _window_names(display: str) -> list[str]:
    return [name for _, name in _windows(display)]


def _window_id(display: str, prefix: str) -> int | None:
    return next((wid for wid, name in _windows(display) if name.startswith(prefix)), None)


def _tray_daemon(talking_head, out: Path, seconds: int) -> subprocess.Popen:
    """`f2f-cam run` with its tray (DISPLAY set by the caller), writing a small file."""
    exe = os.path.join(os.path.dirname(sys.executable), "f2f-cam")
    return subprocess.Popen([exe, "run", "--camera", str(talking_head[0]), "--output", str(out),
                             "--layout", "camera", "--size", "320x180", "--seconds", str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def _running_tray_daemon(talking_head, out: Path):
    """A 60 s tray daemon, yielded once `f2f-cam ctl` reaches it; killed if still running."""
    proc = _tray_daemon(talking_head, out, 60)
    try:
        wait_until(lambda: run_cli("ctl", "status").returncode == 0 or proc.poll() is not None, "the daemon")
        assert proc.poll() is None, proc.stderr.read()
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("backend", ["xorg", "gtk"])
def test_real_tray_icon_starts_and_stops(backend, x_display_with_tray, installed_persona, talking_head, tmp_path,
                                         monkeypatch):
    """The icon docks in trayer and the daemon stops by itself (--seconds): no hang in
    the tray's event loop, with either backend an XEmbed tray can show."""
    if backend == "gtk":
        from test_tray_menus import _needs_menus

        _needs_menus()
    monkeypatch.setenv("DISPLAY", x_display_with_tray)
    monkeypatch.setenv("PYSTRAY_BACKEND", backend)
    # 30 s of frames: on a loaded machine the icon took most of 4 s to dock (start-up
    # first), in a full CI run more than 8, and once more than 15.
    seconds = 30
    proc = _tray_daemon(talking_head, tmp_path / "tray.mp4", seconds)
    try:
        docked = titled = False
        while proc.poll() is None and not (docked and titled):
            docked = docked or _panel_width(x_display_with_tray) >= 20  # trayer's panel grows around an icon
            titled = titled or any(n.startswith("Face2Face Cam: Tiny Test, camera")
                                   for n in _window_names(x_display_with_tray))
            time.sleep(0.2)
        stdout, stderr = proc.communicate(timeout=seconds + 30)  # stops by itself: no hang in the tray
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert docked, (_window_names(x_display_with_tray), stderr)
    if backend == "xorg":  # its icon window carries the tooltip as its name; without menus it says so
        assert titled
        assert "(pystray xorg backend)" in stderr and "f2f-cam ctl" in stderr
    stopped = re.search(r"stopped after ([0-9.]+) s", stdout)  # by --seconds; a loaded machine ends a bit late
    assert stopped and seconds <= float(stopped.group(1)) < seconds + 1, (stdout, stderr)
    assert "Traceback" not in stderr and "Failed to dock" not in stderr


def _panel_width(display: str) -> int:
    import Xlib.display

    d = Xlib.display.Display(display)
    try:
        for w in d.screen().root.query_tree().children:
            if w.get_wm_name() == "panel":
                return w.get_geometry().width
    finally:
        d.close()
    return 0


def test_ctl_reaches_a_daemon_with_a_tray(x_display_with_tray, installed_persona, talking_head, tmp_path,
                                          monkeypatch):
    """With the tray on the main thread, ctl still works, and `ctl quit` closes the tray."""
    monkeypatch.setenv("DISPLAY", x_display_with_tray)
    with _running_tray_daemon(talking_head, tmp_path / "t.mp4") as proc:
        assert run_cli("ctl", "pause").returncode == 0
        assert run_cli("ctl", "quit").returncode == 0
        proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert tray_mod.ICON_SIZE == 64


XDOTOOL = shutil.which("xdotool")


def test_clicking_the_xorg_icon_shows_the_preview(x_display_with_tray, installed_persona, talking_head, tmp_path,
                                                  monkeypatch):
    """pystray's xorg backend (no menus) as shipped never hears a click; f2f-cam's icon
    does, and a left click toggles the preview, as the log promises."""
    skip_unless(bool(XDOTOOL), "needs xdotool on PATH (apt-get install -y xdotool)")
    monkeypatch.setenv("DISPLAY", x_display_with_tray)
    monkeypatch.setenv("PYSTRAY_BACKEND", "xorg")
    with _running_tray_daemon(talking_head, tmp_path / "t.mp4") as proc:
        wait_until(lambda: _window_id(x_display_with_tray, "Face2Face Cam") is not None, "the tray icon")
        icon = _window_id(x_display_with_tray, "Face2Face Cam")
        assert json.loads(run_cli("ctl", "status", "--json").stdout)["preview"] is False
        subprocess.run([XDOTOOL, "mousemove", "--window", str(icon), "4", "4", "click", "1"], check=True,
                       env=dict(os.environ, DISPLAY=x_display_with_tray), timeout=20)
        wait_until(lambda: json.loads(run_cli("ctl", "status", "--json").stdout)["preview"] is True,
                   "the click to show the preview")
        assert run_cli("ctl", "quit").returncode == 0
        proc.communicate(timeout=20)
    assert proc.returncode == 0


def test_preview_window_under_x(x_display_with_tray, installed_persona, talking_head, tmp_path, monkeypatch):
    """`ctl preview on` opens a window showing the output (in its own process: Qt wants
    the main thread, which the tray holds); `off` closes it."""
    from PIL import ImageGrab

    monkeypatch.setenv("DISPLAY", x_display_with_tray)
    with _running_tray_daemon(talking_head, tmp_path / "t.mp4") as proc:
        assert run_cli("ctl", "preview", "on").returncode == 0
        wait_until(lambda: "Face2Face Cam preview" in _window_names(x_display_with_tray), "a preview window")
        # The astronaut, not a black screen (the window's process may take a moment).
        wait_until(lambda: np.asarray(ImageGrab.grab(xdisplay=x_display_with_tray))[30:400].mean() > 20,
                   "a picture in the preview window")
        assert run_cli("ctl", "preview", "off").returncode == 0
        wait_until(lambda: "Face2Face Cam preview" not in _window_names(x_display_with_tray),
                   "the preview window to close")
        assert run_cli("ctl", "quit").returncode == 0
        proc.communicate(timeout=20)
    assert proc.returncode == 0


def wait_until(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"no {what} after {timeout:g} s"
        time.sleep(0.2)


def test_window_output_under_x(x_display_with_tray, talking_head, monkeypatch):
    monkeypatch.setenv("DISPLAY", x_display_with_tray)
    proc = run_cli("run", "--no-tray", "--camera", talking_head[0], "--output", "window", "--layout", "camera",
                   "--size", "320x180", "--seconds", "2")
    assert proc.returncode == 0, proc.stderr
    assert "frames to window" in proc.stdout and proc.stderr == ""


def test_doctor_sees_the_display_and_tray(x_display_with_tray, monkeypatch):
    from f2f_cam import doctor

    monkeypatch.setenv("DISPLAY", x_display_with_tray)
    c = doctor.check_display_and_tray()
    assert c["details"]["display"] == x_display_with_tray
    if c["details"]["backend"] == "xorg":  # no PyGObject here: an icon without menus
        assert c["status"] == "note" and c["details"]["xembed"] is True
        assert "without menus" in c["summary"] and "PyGObject" in c["fix"]
    else:
        assert c["status"] == "ok"
