"""The tray's menus for real: `f2f-cam run` on a virtual X screen with a tray host, its
menu opened with a click (xdotool), a persona and a layout chosen from the submenus,
the switch read back with `ctl status --json`. Once with the gtk backend behind an
XEmbed tray (trayer, no session bus), once with appindicator behind a
StatusNotifierItem host (gtk-sni-tray-standalone on a private session bus, no
notification service). And the backend choice for every desktop, without a screen.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests_helpers import skip_unless

from f2f_cam import desktop
from f2f_cam.desktop import Desktop, choose

from conftest import run_cli
from test_daemon import second_persona  # noqa: F401 (the fixture)
from test_tray import _stop_all, wait_until, x_display_with_tray  # noqa: F401 (the fixture)

XDOTOOL, SNI_TRAY, DBUS = (shutil.which(n) for n in ("xdotool", "gtk-sni-tray-standalone", "dbus-daemon"))
SCREENSHOTS = os.environ.get("F2F_CAM_SCREENSHOTS")  # a folder: the menu pictures are kept there too (docs/)


def _has_gtk() -> bool:
    version, gtk, indicator = desktop._gi_typelibs()
    return bool(version and gtk and indicator)


def _needs_menus():
    skip_unless(bool(XDOTOOL), "needs xdotool (apt-get install -y xdotool)")
    skip_unless(_has_gtk(), "needs PyGObject with the GTK 3 and AyatanaAppIndicator typelibs in this venv "
                "(installer/linux/install.sh, or: apt-get install libcairo2-dev libgirepository1.0-dev "
                "gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1 && pip install 'PyGObject<3.51')")


# -- the backend for each desktop ------------------------------------------------------------

def found(**kw) -> Desktop:
    base = dict(display=":1", gi="3.50.2", gtk=True, indicator="AyatanaAppIndicator3", bus="unix:path=/b",
                sni_host=False, notifications=True, xembed=False, backend=None, why="", missing=[])
    return Desktop(**{**base, **kw})


@pytest.mark.parametrize("kw, backend, missing", [
    (dict(sni_host=True), "appindicator", []),  # KDE, GNOME with its extension, Cinnamon
    (dict(sni_host=True, xembed=True), "appindicator", []),
    (dict(xembed=True), "gtk", []),  # an XEmbed tray (trayer, older panels)
    (dict(xembed=True, bus=None, notifications=False), "gtk", []),  # ... with no session bus
    (dict(sni_host=True, xembed=True, indicator=None), "gtk", []),  # half installed: GTK on the XEmbed side
    (dict(xembed=True, gtk=False), "xorg", ["Gtk"]),  # PyGObject without the GTK typelib
    (dict(xembed=True, gi=None, gtk=False, indicator=None), "xorg", ["PyGObject"]),  # a bare venv
    (dict(sni_host=True, indicator=None), None, ["AppIndicator"]),  # nothing can dock: say which package
    (dict(), None, []),  # GNOME without the extension
    (dict(bus=None), None, []),
    (dict(display=None, xembed=True), None, []),
])
def test_the_backend_is_what_the_desktop_can_show(kw, backend, missing):
    chosen, why, needs = choose(found(**kw))
    assert (chosen, needs) == (backend, missing), why
    assert why


def test_a_users_backend_wins():
    assert choose(found(sni_host=True), forced="xorg")[0] == "xorg"


def test_the_fix_names_the_packages_and_this_python(monkeypatch):
    monkeypatch.setattr(desktop, "package_manager", lambda: "apt-get")
    monkeypatch.setattr(desktop, "pygobject_requirement", lambda: "PyGObject<3.51")
    fix = desktop.menus_fix(["PyGObject"], python="/venv/bin/python")
    assert "gir1.2-ayatanaappindicator3-0.1" in fix and "libgirepository1.0-dev" in fix
    assert "/venv/bin/python -m pip install 'PyGObject<3.51'" in fix
    assert desktop.menus_fix(["AppIndicator"]).endswith("apt-get install -y gir1.2-ayatanaappindicator3-0.1")
    monkeypatch.setattr(desktop, "package_manager", lambda: "dnf")
    assert "gobject-introspection-devel" in desktop.menus_fix(["PyGObject"])


def test_no_session_bus_is_never_started(tmp_path):
    env = {"DISPLAY": ":1", "XDG_RUNTIME_DIR": str(tmp_path)}
    assert desktop.session_bus_address(env) is None
    (tmp_path / "bus").touch()
    assert desktop.session_bus_address(env) == f"unix:path={tmp_path / 'bus'}"
    assert desktop.session_bus_address({"DBUS_SESSION_BUS_ADDRESS": "unix:path=/x"}) == "unix:path=/x"


# -- a desktop with a StatusNotifierItem host ----------------------------------------------

@pytest.fixture
def sni_desktop(tmp_path):
    """Xvfb + a private D-Bus session bus + gtk-sni-tray-standalone (its own watcher)."""
    skip_unless(bool(SNI_TRAY and DBUS), "needs gtk-sni-tray-standalone and dbus-daemon "
                "(apt-get install -y haskell-gtk-sni-tray-utils dbus)")
    procs = []
    with contextlib.ExitStack() as stack:
        stack.callback(_stop_all, procs)
        display = _start_xvfb(procs)
        bus = subprocess.Popen([DBUS, "--session", "--nofork", "--print-address=1"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
        procs.append(bus)
        address = bus.stdout.readline().strip()
        assert address, "dbus-daemon did not start"
        env = dict(os.environ, DISPLAY=display, DBUS_SESSION_BUS_ADDRESS=address)
        procs.append(subprocess.Popen([SNI_TRAY, "--watcher", "--top", "--end", "--size", "30"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_until(lambda: desktop._bus_names(address, (desktop.SNI_WATCHER,))[desktop.SNI_WATCHER],
                   "a StatusNotifierItem watcher on the bus")
        yield display, address


def _start_xvfb(procs) -> str:
    r, w = os.pipe()
    procs.append(subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                                  pass_fds=(w,), stderr=subprocess.DEVNULL))
    os.close(w)
    with os.fdopen(r) as f:
        number = f.readline().strip()
    assert number, "Xvfb did not start"
    return f":{number}"


# -- driving the menu ------------------------------------------------------------------------

def _viewable(display: str) -> list[tuple[int, int, int, int, int]]:
    """(id, x, y, width, height) of the top-level windows on screen."""
    import Xlib.display
    import Xlib.error
    import Xlib.X

    d = Xlib.display.Display(display)
    out = []
    try:
        for w in d.screen().root.query_tree().children:
            try:
                if w.get_attributes().map_state != Xlib.X.IsViewable:
                    continue
                g = w.get_geometry()
            except Xlib.error.XError:  # gone meanwhile
                continue
            if g.width > 2 and g.height > 2:
                out.append((w.id, g.x, g.y, g.width, g.height))
    finally:
        d.close()
    return out


class Screen:
    """xdotool on one display, and the popup menus that open on it."""

    def __init__(self, display: str):
        self.display = display
        self.env = dict(os.environ, DISPLAY=display)

    def do(self, *args) -> None:
        subprocess.run([XDOTOOL, *map(str, args)], check=True, env=self.env, timeout=20)

    def menus(self) -> list[tuple]:
        """Open popup menus, as (id, x, y, w, h), oldest first (X stacks new ones on top)."""
        return [w for w in _viewable(self.display) if 40 < w[4] < 400 and 40 < w[3] < 400]

    def wait_menus(self, count: int) -> list[tuple]:
        wait_until(lambda: len(self.menus()) == count, f"{count} open menu(s)", timeout=15)
        return self.menus()

    def click_item(self, menu: tuple, index: int, count: int) -> None:
        """Click item ``index`` of a menu of ``count`` items of one height (no separators)."""
        _, x, y, w, h = menu
        self.do("mousemove", x + w // 2, y + int(h * (index + 0.5) / count), "sleep", "0.3", "click", "1")

    def grab(self, path: Path) -> None:
        """The top right of the screen: the icon and the open menus."""
        from PIL import ImageGrab

        image = ImageGrab.grab(xdisplay=self.display)
        menus = self.menus()
        left = max(0, min(m[1] for m in menus) - 12) if menus else 0
        bottom = min(image.height, max(m[2] + m[4] for m in menus) + 12) if menus else image.height
        image.crop((left, 0, image.width, bottom)).save(path)


def _status() -> dict:
    return json.loads(run_cli("ctl", "status", "--json").stdout)


def _start_tray_daemon(talking_head, out: Path, env: dict) -> subprocess.Popen:
    exe = os.path.join(os.path.dirname(sys.executable), "f2f-cam")
    proc = subprocess.Popen([exe, "run", "--camera", str(talking_head[0]), "--output", str(out), "--layout", "camera",
                             "--size", "320x180", "--seconds", "90"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_until(lambda: run_cli("ctl", "status").returncode == 0 or proc.poll() is not None, "the daemon")
    assert proc.poll() is None, proc.stderr.read()
    return proc


def _choose_from_the_menus(screen: Screen, open_menu, picture: Path) -> None:
    """Persona tiny2 from the Persona submenu, then "Side by side" from Layout (its
    second item), with the open menus pictured; then Quit."""
    from f2f_cam.registry import LAYOUTS

    layouts = list(LAYOUTS)
    open_menu()
    screen.wait_menus(1)
    screen.do("key", "Down", "Right")  # Persona (the first item) -> its submenu
    sub = screen.wait_menus(2)[-1]
    time.sleep(1.5)  # three of the tray's refreshes: a submenu that a refresh closes fails below
    screen.click_item(sub, 1, 2)  # tiny, tiny2
    wait_until(lambda: _status()["persona"] == "tiny2", "the persona switched from the menu")
    assert screen.wait_menus(0) == []

    open_menu()
    screen.wait_menus(1)
    screen.do("key", "Down", "Down", "Right")  # Layout -> its submenu
    sub = screen.wait_menus(2)[-1]
    time.sleep(1.5)
    screen.grab(picture)
    screen.click_item(sub, layouts.index("side-by-side"), len(layouts))
    wait_until(lambda: _status()["layout"] == "side-by-side", "the layout switched from the menu")

    open_menu()
    screen.wait_menus(1)
    screen.do("key", "Up", "Return")  # the last item: Quit


def _finish(proc, picture: Path, stderr: str) -> str:
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert "the tray icon stopped" not in stderr, stderr  # pystray's notifier failing at Quit (no service)
    assert picture.stat().st_size > 1000
    if SCREENSHOTS:
        shutil.copy(picture, Path(SCREENSHOTS) / picture.name)
    return stderr


def test_gtk_menu_behind_an_xembed_tray(x_display_with_tray, installed_persona, second_persona, talking_head,
                                        tmp_path, monkeypatch):
    """trayer (an XEmbed tray), and no D-Bus session bus at all: the gtk backend, no
    notifications, every item works, Quit exits 0."""
    _needs_menus()
    env = {k: v for k, v in os.environ.items() if k not in ("DBUS_SESSION_BUS_ADDRESS", "PYSTRAY_BACKEND")}
    env.update(DISPLAY=x_display_with_tray, XDG_RUNTIME_DIR=str(tmp_path))  # no bus socket there
    proc = _start_tray_daemon(talking_head, tmp_path / "t.mp4", env)
    screen = Screen(x_display_with_tray)
    try:
        def open_menu():  # right-click the icon docked in trayer's panel
            icon = next(w for w in _viewable(x_display_with_tray) if w[3] < 60 and w[4] <= 40)
            screen.do("mousemove", icon[1] + icon[3] - 12, icon[2] + icon[4] // 2, "click", "3")

        wait_until(lambda: any(w[3] > 20 and w[4] <= 40 for w in _viewable(x_display_with_tray)), "the icon docked")
        _choose_from_the_menus(screen, open_menu, tmp_path / "tray-menu-gtk.png")
        _, stderr = proc.communicate(timeout=30)  # Quit was the last click
    finally:
        if proc.poll() is None:
            proc.kill()
    _finish(proc, tmp_path / "tray-menu-gtk.png", stderr)
    assert "no D-Bus session bus: no desktop notifications" in stderr


def test_appindicator_menu_behind_a_status_notifier_host(sni_desktop, installed_persona, second_persona,
                                                         talking_head, tmp_path):
    """A StatusNotifierItem host on a session bus with no notification service: the
    appindicator backend; submenus stay open (the menu is rebuilt only on change)."""
    _needs_menus()
    display, address = sni_desktop
    env = {k: v for k, v in os.environ.items() if k != "PYSTRAY_BACKEND"}
    env.update(DISPLAY=display, DBUS_SESSION_BUS_ADDRESS=address)
    proc = _start_tray_daemon(talking_head, tmp_path / "t.mp4", env)
    screen = Screen(display)
    try:
        bar = next(w for w in _viewable(display) if w[4] == 30)

        def open_menu():  # the only icon, at the right end of the bar
            screen.do("mousemove", bar[1] + bar[3] - 15, bar[2] + 15, "click", "3")

        time.sleep(1)  # the host draws the icon once it has read it over the bus
        _choose_from_the_menus(screen, open_menu, tmp_path / "tray-menu-appindicator.png")
        _, stderr = proc.communicate(timeout=30)  # Quit was the last click
    finally:
        if proc.poll() is None:
            proc.kill()
    _finish(proc, tmp_path / "tray-menu-appindicator.png", stderr)
    assert "no notification service on the session bus" in stderr


def test_no_tray_host_runs_headless_and_quits_cleanly(installed_persona, talking_head, tmp_path):
    """A display with no tray at all (and no bus): one line, the camera keeps publishing,
    `ctl quit` exits 0."""
    procs = []
    try:
        display = _start_xvfb(procs)
        env = {k: v for k, v in os.environ.items() if k not in ("DBUS_SESSION_BUS_ADDRESS", "PYSTRAY_BACKEND")}
        env.update(DISPLAY=display, XDG_RUNTIME_DIR=str(tmp_path))
        proc = _start_tray_daemon(talking_head, tmp_path / "t.mp4", env)
        wait_until(lambda: _status()["frames_out"] > 10, "frames published")
        assert run_cli("ctl", "quit").returncode == 0
        _, stderr = proc.communicate(timeout=30)
    finally:
        _stop_all(procs)
    assert proc.returncode == 0, stderr
    lines = [line for line in stderr.splitlines() if "tray" in line]
    assert len(lines) == 1 and "no tray icon: no system tray" in lines[0] and "f2f-cam ctl" in lines[0], stderr


# -- doctor's tray line ------------------------------------------------------------------------

def _doctor_sees(monkeypatch, probe: dict) -> dict:
    """doctor's tray check, given what `python -m f2f_cam.desktop` found."""
    from f2f_cam import doctor

    monkeypatch.setenv("DISPLAY", ":1")
    monkeypatch.setattr(doctor.sys, "platform", "linux")
    monkeypatch.setattr(desktop, "package_manager", lambda: "apt-get")
    d = found(**probe)
    d.backend, d.why, d.missing = choose(d)
    answer = subprocess.CompletedProcess([], 0, json.dumps(d.as_dict()), "")
    monkeypatch.setattr(doctor.subprocess, "run", lambda *a, **kw: answer)
    return doctor.check_display_and_tray()


def test_doctor_names_the_package_a_half_install_lacks(monkeypatch):
    c = _doctor_sees(monkeypatch, dict(xembed=True, gtk=False))  # PyGObject without GTK's typelib
    assert c["status"] == "note" and "xorg backend" in c["summary"] and "without menus" in c["summary"]
    assert "apt-get install -y gir1.2-gtk-3.0" in c["fix"] and "--no-tray" not in c["fix"]
    c = _doctor_sees(monkeypatch, dict(sni_host=True, indicator=None))  # KDE, no AppIndicator typelib
    assert c["status"] == "note" and "without an icon" in c["summary"]
    assert "gir1.2-ayatanaappindicator3-0.1" in c["fix"]
    c = _doctor_sees(monkeypatch, dict(xembed=True, gi=None, gtk=False, indicator=None))  # a bare venv
    assert f"{sys.executable} -m pip install" in c["fix"] and "libcairo2-dev" in c["fix"]
    c = _doctor_sees(monkeypatch, dict())  # GNOME without its extension
    assert "gnome-shell-extension-appindicator" in c["fix"]


def test_doctor_says_there_is_no_session_bus(x_display_with_tray, monkeypatch, tmp_path):
    """For real: trayer, no bus. The tray works (gtk), and doctor says what is missing."""
    from f2f_cam import doctor

    _needs_menus()
    monkeypatch.setenv("DISPLAY", x_display_with_tray)
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    c = doctor.check_display_and_tray()
    assert c["status"] == "ok" and "gtk backend" in c["summary"], c
    assert "no D-Bus session bus" in c["summary"] and "no notification service" in c["summary"]


def test_doctor_sees_the_status_notifier_host(sni_desktop, monkeypatch):
    from f2f_cam import doctor

    _needs_menus()
    display, address = sni_desktop
    monkeypatch.setenv("DISPLAY", display)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
    c = doctor.check_display_and_tray()
    assert c["status"] == "ok" and "appindicator backend" in c["summary"] and "session bus yes" in c["summary"], c
