"""The preview window a person drives: the key table and the overlay as pure functions,
then the real window under Xvfb, its keys sent with xdotool, switching a real daemon."""

import os
import shutil
import subprocess
import time

import numpy as np
import pytest
from tests_helpers import skip_unless

from f2f_cam.control import ControlClient
from f2f_cam.errors import UserError
from f2f_cam.sinks import preview_ui as ui

from test_daemon import daemons, second_persona  # noqa: F401 (fixtures)
from test_virtualcam import Recorder, recorder  # noqa: F401 (the fixture)

STATUS = {"persona": "tiny", "persona_display_name": "Tiny Test", "personas": ["tiny", "tiny2", "zed"],
          "layout": "persona", "fps": 19.6, "mirror": False, "paused": False, "state": "running"}


# -- the key table ------------------------------------------------------------------------

@pytest.mark.parametrize("key, status, sent", [
    ("1", {}, ("persona", "tiny")),
    ("3", {}, ("persona", "zed")),
    ("l", {}, ("landmarks", "on")),
    ("l", {"layout": "landmarks"}, ("landmarks", "off")),
    ("m", {}, ("mirror", "on")),
    ("m", {"mirror": True}, ("mirror", "off")),
    ("c", {}, ("calibrate", None)),
    ("p", {}, ("pause", None)),
    ("p", {"paused": True}, ("resume", None)),
    (" ", {}, ("passthrough", "on")),
    (" ", {"layout": "camera"}, ("passthrough", "off")),
])
def test_each_key_asks_for_the_command_that_flips_what_the_status_shows(key, status, sent):
    assert ui.request_for(key, {**STATUS, **status}) == sent


def test_keys_in_either_case_and_nothing_else():
    assert [ui.key_of(ord(c)) for c in "LlMmCcPpHhQq29 "] == list("llmmccpphhqq29 ")
    assert ui.key_of(27) == "\x1b" and ui.KEYS["\x1b"].window == "close"
    assert ui.KEYS["h"].window == "help" and ui.KEYS["q"].window == "close"
    # No key (-1), keys with no job, Shift alone (225 from Qt), and 0 are ignored.
    assert [ui.key_of(c) for c in (-1, ord("x"), ord("0"), 225, 0, ord("\r"))] == [None] * 6
    # Every key of the help panel is in the table, and only once.
    assert sorted(ui.KEYS) == sorted("".join(s.keys for s in ui.SHORTCUTS))


def test_a_key_that_cannot_work_says_why():
    with pytest.raises(UserError, match=r"no persona 7: 3 installed \(1-3\)"):
        ui.request_for("7", STATUS)
    with pytest.raises(UserError, match=r"no persona 2: 1 installed \(1\)"):
        ui.request_for("2", {**STATUS, "personas": ["tiny"]})
    with pytest.raises(UserError, match="no persona 1: 0 installed"):
        ui.request_for("1", {**STATUS, "personas": []})
    with pytest.raises(UserError, match="no daemon"):
        ui.request_for("m", None)


# -- the overlay ----------------------------------------------------------------------------

def test_overlay_shows_persona_layout_fps_and_state():
    ov = ui.overlay("Face2Face Cam preview", {**STATUS, "mirror": True, "state": "paused"}, 7, daemon=True)
    assert ov.lines == ("Tiny Test", "persona  20 fps  mirror") and ov.state == "paused"
    assert ov.help == () and ov.message == ""
    assert ui.overlay("t", {**STATUS, "persona": None, "persona_display_name": None, "layout": "camera",
                            "state": "camera lost"}, 0, daemon=True).lines[0] == "no persona"


def test_overlay_without_a_daemon_shows_what_the_window_knows():
    ov = ui.overlay("Face2Face Cam demo", None, 24.6, daemon=False, message="hi")
    assert ov == ui.Overlay(("Face2Face Cam demo", "25 fps"), "", "hi", ())
    lost = ui.overlay("Face2Face Cam preview", STATUS, 3, daemon=True, lost=True)
    assert lost.lines == ("Face2Face Cam preview", "3 fps") and lost.state == "no daemon"
    assert ui.overlay("x", None, 3, daemon=True).state == ""  # not asked yet: no verdict


def test_help_lists_every_shortcut_and_the_personas_to_pick():
    rows = ui.overlay("t", STATUS, 20, daemon=True, show_help=True).help
    assert rows[0] == "Keys"
    for s in ui.SHORTCUTS:
        assert any(r.startswith(s.label) and s.help in r for r in rows), s.label
    assert rows[-1] == "*1 tiny   2 tiny2   3 zed"  # * the persona in use
    no_daemon = ui.overlay("t", None, 20, daemon=False, show_help=True).help
    assert "only H and Q work" in no_daemon[-1]


def test_drawing_the_overlay_changes_only_the_copy_it_is_given():
    frame = np.full((180, 320, 3), 120, np.uint8)
    before = frame.copy()
    assert ui.display_size(320, 180) == (640, 360) and ui.display_size(1280, 720) == (1280, 720)
    plain = ui.draw(np.full((360, 640, 3), 120, np.uint8), ui.overlay("t", STATUS, 20, daemon=True))
    helped = ui.draw(np.full((360, 640, 3), 120, np.uint8),
                     ui.overlay("t", STATUS, 20, daemon=True, message="no persona 7", show_help=True))
    assert np.array_equal(frame, before)
    assert plain[:60, :150].min() < 80 and plain[:60, :150].max() == 255  # a dark box with white text
    assert plain[150:210, 250:390].std() == 0  # the middle is left alone...
    assert helped[150:210, 250:390].std() > 10  # ...until the help panel opens
    assert (np.abs(helped[-30:].astype(int) - plain[-30:]).sum(-1) > 0).any()  # the message at the bottom
    big = ui.draw(np.zeros((720, 1280, 3), np.uint8), ui.overlay("t", STATUS, 20, daemon=True, show_help=True))
    assert big.shape == (720, 1280, 3) and big.dtype == np.uint8


# -- the real window ----------------------------------------------------------------------------

XVFB, XDOTOOL = shutil.which("Xvfb"), shutil.which("xdotool")
TITLE = "Face2Face Cam preview"


@pytest.fixture
def x_display(monkeypatch):
    """A private Xvfb display (no window manager), set as DISPLAY."""
    skip_unless(bool(XVFB and XDOTOOL), "needs Xvfb and xdotool on PATH (apt-get install -y xvfb xdotool)")
    r, w = os.pipe()
    xvfb = subprocess.Popen([XVFB, "-displayfd", str(w), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stderr=subprocess.DEVNULL)
    os.close(w)
    try:
        with os.fdopen(r) as f:
            number = f.readline().strip()
        assert number, "Xvfb did not start"
        monkeypatch.setenv("DISPLAY", f":{number}")
        yield f":{number}"
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=5)


def wait_until(predicate, what: str, timeout: float = 15.0):
    """The predicate's first value that is not None, False or empty."""
    deadline = time.monotonic() + timeout
    while (value := predicate()) is None or (not isinstance(value, np.ndarray) and not value):
        assert time.monotonic() < deadline, f"no {what} after {timeout:g} s"
        time.sleep(0.05)
    return value


def xdotool(*args: str) -> str:
    proc = subprocess.run([XDOTOOL, *args], capture_output=True, text=True, timeout=10)
    return proc.stdout.strip()


def preview_window() -> str | None:
    """The preview window's X id, once it is mapped with a size (None: no window)."""
    ids = xdotool("search", "--onlyvisible", "--name", TITLE).split()
    return ids[0] if ids else None


def grab(display: str, wid: str) -> np.ndarray:
    """The window as it is on screen, RGB (H, W, 3)."""
    from PIL import ImageGrab

    geo = dict(line.split("=") for line in xdotool("getwindowgeometry", "--shell", wid).splitlines())
    x, y, w, h = (int(geo[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
    return np.asarray(ImageGrab.grab(bbox=(x, y, x + w, y + h), xdisplay=display).convert("RGB"))


def _showing(display: str) -> str | None:
    """The preview window's id once it shows a 640x360 picture that is not all black."""
    wid = preview_window()
    if wid is None:
        return None
    picture = grab(display, wid)
    return wid if picture.shape == (360, 640, 3) and picture.max() > 0 else None


def press(wid: str, key: str) -> None:
    xdotool("key", "--window", wid, key)


def test_keys_in_the_preview_window_drive_the_daemon(x_display, talking_head, installed_persona, second_persona,
                                                     recorder, daemons, capfd):
    # (Upper case keys: test_keys_in_either_case. xdotool types "L" here as a plain l.)
    d = daemons(talking_head[0], layout="persona")
    assert ControlClient().request("preview", "on")["status"]["preview"] is True
    # Frames of 320x180 are shown at 640x360, so that the overlay stays legible. The
    # window is looked up again while waiting (Qt may map a window of that name before
    # the one that shows the picture), and given time: a loaded CI machine is slow to start.
    wid = wait_until(lambda: _showing(x_display), "picture in the window", timeout=45)

    def after(key: str, what: str, predicate) -> None:
        press(wid, key)
        wait_until(lambda: predicate(d.status()), what)

    assert d.status().personas == ["tiny", "tiny2"]
    after("2", "switch to the second persona", lambda st: st.persona == "tiny2")
    press(wid, "7")  # there is no 7th: the overlay says so; the daemon is untouched
    after("l", "landmarks", lambda st: st.layout == "landmarks")
    after("l", "landmarks off again", lambda st: st.layout == "persona")
    after("m", "mirror on", lambda st: st.mirror)
    after("space", "passthrough", lambda st: st.layout == "camera")
    after("space", "passthrough off", lambda st: st.layout == "persona")
    after("c", "calibrated neutral face", lambda st: st.calibrated)
    after("p", "pause", lambda st: st.paused)
    assert d.status().persona == "tiny2"  # 7 changed nothing

    # Paused, the output is one frozen frame: what changes on screen now is the window's own.
    plain = wait_until(lambda: _steady(x_display, wid), "steady picture")
    press(wid, "h")
    assert not _white(plain[100:260, 200:440]).any()  # the red persona face
    wait_until(lambda: _white(grab(x_display, wid)[100:260, 200:440]).sum() > 200, "help panel")
    # The overlay is in the window, never in what the camera publishes: the persona
    # layout's black bars stay black where the window draws its text.
    assert _white(plain[:40, :140]).any()
    sent = Recorder.last.sent[-1].reshape(180, 320, 3)
    assert sent[:20, :70].max() == 0

    after("p", "resume", lambda st: not st.paused)
    after("q", "preview off after q", lambda st: not st.preview)
    wait_until(lambda: preview_window() is None, "window gone")
    assert d.running and "Traceback" not in capfd.readouterr().err


def _white(rgb: np.ndarray) -> np.ndarray:
    return rgb.min(-1) > 200


def _yellow(rgb: np.ndarray) -> np.ndarray:  # the overlay's messages
    return (rgb[..., 0] > 200) & (rgb[..., 1] > 160) & (rgb[..., 2] < 150)


def _steady(display: str, wid: str) -> np.ndarray | None:
    """The window's picture once two grabs a moment apart agree (the overlay's fps may tick)."""
    a = grab(display, wid)
    time.sleep(0.2)
    b = grab(display, wid)
    return a if np.array_equal(a[60:], b[60:]) else None


def test_closing_the_window_and_esc_turn_the_preview_off(x_display, talking_head, installed_persona, recorder,
                                                         daemons):
    d = daemons(talking_head[0], layout="camera")
    for close in ("escape", "close button"):
        ControlClient().request("preview", "on")
        wid = wait_until(preview_window, "preview window", timeout=45.0)  # a loaded CI machine: 15 s once was not enough
        sent = [0.0]

        def closed():
            # Sent again each second: a window that has only just mapped may not be
            # listening yet (a loaded CI machine lost the first one).
            if time.monotonic() - sent[0] > 1.0:
                press(wid, "Escape") if close == "escape" else _close_button(x_display, int(wid))
                sent[0] = time.monotonic()
            return not d.status().preview

        wait_until(closed, f"preview off after {close}")
        wait_until(lambda: preview_window() is None, f"window gone after {close}")
    assert d.running  # the window goes, the camera stays


def _close_button(display: str, wid: int) -> None:
    """What a window manager sends when the window's close button is clicked."""
    import Xlib.display
    import Xlib.protocol.event
    import Xlib.X

    d = Xlib.display.Display(display)
    try:
        window = d.create_resource_object("window", wid)
        event = Xlib.protocol.event.ClientMessage(
            window=window, client_type=d.intern_atom("WM_PROTOCOLS"),
            data=(32, [d.intern_atom("WM_DELETE_WINDOW"), Xlib.X.CurrentTime, 0, 0, 0]))
        window.send_event(event, event_mask=Xlib.X.NoEventMask)
        d.flush()
    finally:
        d.close()


def test_a_window_without_a_daemon_shows_frames_and_never_crashes(x_display, capfd):
    from f2f_cam.sinks.window import PreviewWindow

    frame = np.full((180, 320, 3), 90, np.uint8)
    with PreviewWindow((320, 180), "Face2Face Cam demo") as win:
        win.write(frame)
        wid = wait_until(lambda: (ids := xdotool("search", "--onlyvisible", "--name", "Face2Face Cam demo").split())
                         and ids[0], "demo window")
        for key in ("2", "m", "p", "space"):  # daemon keys only say "no daemon"
            press(wid, key)
        # ...in yellow at the bottom of the window.
        wait_until(lambda: _yellow(grab(x_display, wid)[-40:, :300]).sum() > 50, "no-daemon message")
        press(wid, "h")
        wait_until(lambda: _white(grab(x_display, wid)[100:260, 200:440]).sum() > 200, "help panel")
        press(wid, "q")
        wait_until(lambda: win.closed, "window closed by q")
    err = capfd.readouterr().err
    assert "Traceback" not in err and "f2f-cam preview:" not in err, err
