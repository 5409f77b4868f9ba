"""The tray icon: a menu that calls the daemon's methods, and an icon that shows its state.

No policy lives here: every item runs one entry of the command table
(``f2f_cam.commands.COMMANDS``, which also labels it), and every check mark reads
the daemon's ``DaemonStatus``. ``pystray`` is imported only when a tray is made, never
at import time (``import pystray`` fails on a machine with no display).
"""

from __future__ import annotations

import importlib
import logging
import os
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from f2f_cam import paths
from f2f_cam.commands import COMMANDS
from f2f_cam.errors import UserError, one_line
from f2f_cam.registry import LAYOUTS
from f2f_cam.system import display_problem

log = logging.getLogger(__name__)

ICON_SIZE = 64
# Icon badge per state: green running, amber paused, grey no face, red camera lost.
STATE_COLORS = {
    "running": (46, 184, 92),
    "paused": (240, 170, 30),
    "no face": (150, 150, 150),
    "camera lost": (220, 50, 47),
}


def icon_state(daemon) -> str:
    """running | paused | no face | camera lost."""
    return daemon.status().state


def draw_icon(state: str):
    """A 64x64 RGBA camera glyph with a badge in the state's colour (Pillow)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (ICON_SIZE, ICON_SIZE), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    # Camera body and lens.
    d.rounded_rectangle((4, 16, 46, 50), radius=7, fill=(40, 44, 52, 255), outline=(230, 230, 230, 255), width=2)
    d.polygon([(46, 27), (60, 19), (60, 47), (46, 39)], fill=(40, 44, 52, 255), outline=(230, 230, 230, 255))
    d.ellipse((15, 23, 35, 43), fill=(90, 140, 220, 255), outline=(230, 230, 230, 255), width=2)
    # State badge, bottom right.
    color = STATE_COLORS.get(state, STATE_COLORS["running"]) + (255,)
    d.ellipse((38, 38, 62, 62), fill=color, outline=(255, 255, 255, 255), width=2)
    if state == "paused":
        d.rectangle((45, 44, 48, 56), fill=(255, 255, 255, 255))
        d.rectangle((52, 44, 55, 56), fill=(255, 255, 255, 255))
    elif state == "camera lost":
        d.line((45, 45, 55, 55), fill=(255, 255, 255, 255), width=3)
        d.line((55, 45, 45, 55), fill=(255, 255, 255, 255), width=3)
    elif state == "no face":
        d.line((44, 50, 56, 50), fill=(255, 255, 255, 255), width=3)
    return img


def title_for(st) -> str:
    """The icon's tooltip, from a ``DaemonStatus``."""
    return f"Face2Face Cam: {st.persona_display_name or 'no persona'}, {st.layout or '-'} ({st.state})"


def open_personas_folder() -> Path:
    """Show the user's personas folder in the file manager (the tray's item)."""
    folder = paths.personas_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if sys.platform == "win32":
        os.startfile(folder)  # noqa: S606 (the user's own folder)
    else:
        opener = "open" if sys.platform == "darwin" else "xdg-open"
        if not shutil.which(opener):
            raise UserError(f"cannot open {folder}: `{opener}` is not installed")
        subprocess.Popen([opener, str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return folder


class Tray:
    """The tray icon of one running ``Daemon``.

    ``background=True`` runs menu actions in a short-lived thread so the tray never
    freezes while a persona loads; tests pass False to see the result at once.
    """

    POLL_SECONDS = 0.5

    def __init__(self, daemon, *, background: bool = True, exit_on_hang: bool = True, backend: str | None = None,
                 notifications: bool = True):
        if backend:  # before pystray's import, which otherwise tries its own order of backends
            os.environ.setdefault("PYSTRAY_BACKEND", backend)
        import pystray

        self.daemon = daemon
        self.background = background
        self.exit_on_hang = exit_on_hang
        self._pystray = pystray
        st = daemon.status()
        self._state = st.state
        self._returned = threading.Event()
        self._shown = False  # the icon's event loop runs (not in tests with the dummy backend)
        self._menu_showed: tuple | None = None  # what the menu showed when last rebuilt
        icon_cls = importlib.import_module(f"pystray._{backend}").Icon if backend else pystray.Icon
        self._icon_cls = icon_cls
        if icon_cls.__module__.endswith("._xorg"):
            icon_cls = _one_thread_xorg_icon(icon_cls)
        elif icon_cls.__module__.endswith(("._gtk", "._appindicator")):
            icon_cls = _quiet_dbus_icon(icon_cls, notifications)
        self.icon = icon_cls("f2f-cam", draw_icon(self._state), title_for(st), menu=self.menu())

    @property
    def has_menu(self) -> bool:
        return bool(self._icon_cls.HAS_MENU)

    @property
    def backend(self) -> str:
        """pystray's backend: xorg, gtk, appindicator, win32, darwin or dummy."""
        return self._icon_cls.__module__.rsplit(".", 1)[-1].lstrip("_")

    # -- the menu ---------------------------------------------------------------------

    def menu(self):
        Menu, Item = self._pystray.Menu, self._pystray.MenuItem
        d = self.daemon
        st = lambda: d.status()  # noqa: E731 (read when the menu is drawn)

        def run(name, arg=None):
            return self._do(COMMANDS[name], d, arg)

        def toggle(name, is_on, **kw):  # an on/off command: its item flips the state it shows
            return Item(COMMANDS[name].label, self._do(lambda: COMMANDS[name](d, not is_on())),
                        checked=lambda _item: is_on(), **kw)

        def persona_items():  # read when the menu is built: personas come and go
            names = d.persona_names()
            for name in names:
                yield Item(name, run("persona", name), checked=lambda _item, n=name: st().persona == n, radio=True)
            if not names:
                yield Item("(none installed)", None, enabled=False)

        layout_items = [Item(spec.label, run("layout", name), checked=lambda _item, n=name: st().layout == n,
                             radio=True) for name, spec in LAYOUTS.items()]
        return Menu(
            Item(COMMANDS["persona"].label, Menu(persona_items)),
            Item(COMMANDS["layout"].label, Menu(*layout_items)),
            toggle("preview", lambda: st().preview, default=True),
            toggle("landmarks", lambda: st().layout == "landmarks"),
            Item(COMMANDS["calibrate"].label, run("calibrate")),
            Item(COMMANDS["pause"].label, self._do(lambda: d.set_paused(not d.paused)), checked=lambda _item: d.paused),
            toggle("mirror", lambda: st().mirror),
            Menu.SEPARATOR,
            Item("Open personas folder", self._do(open_personas_folder)),
            Item(COMMANDS["quit"].label, run("quit")),
        )

    def _do(self, fn, *args):
        """A menu action: call ``fn(*args)``, tell the user if it fails, refresh."""
        def run():
            try:
                fn(*args)
            except UserError as e:
                self._tell(str(e))
            except Exception as e:  # a bug: log it, keep the tray alive
                log.exception("tray action failed")
                self._tell(f"internal error: {one_line(e)}")
            self.refresh()

        def action(_icon, _item):
            if self.background:
                threading.Thread(target=run, name="tray-action", daemon=True).start()
            else:
                run()

        return action

    def _tell(self, message: str) -> None:
        log.warning("%s", message)
        if self.icon.HAS_NOTIFICATION and self._shown:
            try:
                self.icon.notify(message, "Face2Face Cam")
            except Exception:  # notifications are best effort
                log.debug("notification failed", exc_info=True)

    # -- the icon ---------------------------------------------------------------------

    def refresh(self) -> None:
        """Redraw the icon if the state changed, and rebuild the menu's check marks."""
        st = self.daemon.status()  # one snapshot for the badge and the tooltip
        if st.state != self._state:
            self._state = st.state
            self.icon.icon = draw_icon(st.state)
        self.icon.title = title_for(st)
        shows = self._menu_shows(st)
        if self._shown and self.has_menu and shows != self._menu_showed:
            self._menu_showed = shows
            self.icon.update_menu()

    def _menu_shows(self, st) -> tuple:
        """What the menu's items show. The menu is rebuilt only when this changes: a
        rebuild closes an open submenu (StatusNotifierItem hosts), and the tray
        refreshes every half second."""
        return (tuple(self.daemon.persona_names()), st.persona, st.layout, st.preview, st.mirror, st.paused)

    def run(self) -> None:
        """Show the icon; blocks (on the main thread) until the daemon stops."""
        try:
            self.icon.run(setup=self._watch)
        finally:
            self._returned.set()
            wake = getattr(self.icon, "_wake", None)
            if wake is not None:
                wake.close()

    def _watch(self, icon) -> None:
        icon.visible = True
        self._shown = True
        while not self.daemon.wait(timeout=self.POLL_SECONDS):
            try:
                self.refresh()
            except Exception:
                log.exception("tray refresh failed")
        self._shown = False
        try:
            icon.visible = False
            icon.stop()
        except Exception:  # the tray is going away anyway
            log.debug("stopping the tray icon failed", exc_info=True)
        # Last resort if the tray's event loop never returns: close the daemon
        # properly, then leave rather than hang with the camera held.
        if not self._returned.wait(5) and self.exit_on_hang:
            log.warning("the tray icon did not stop; exiting")
            self.daemon.stop()
            logging.shutdown()
            os._exit(0)


def _one_thread_xorg_icon(base):
    """pystray's xorg ``Icon``, changed so that only its event-loop thread uses its X
    connection, and so that it hears clicks.

    pystray runs a change asked for by another thread (show, new icon image, title,
    stop) by sending its own window a message over the shared python-xlib connection;
    two threads on one python-xlib connection sometimes deadlock (seen here about one
    start or stop in fifteen, under load: the daemon then hangs for good). This
    subclass sends that message over a second connection instead, so the shared one is
    only ever used by the loop. Falls back to ``base`` if pystray's internals differ.
    """
    import Xlib.display
    import Xlib.X
    from Xlib.protocol import event as xevent

    needed = ("_rewrite_implementation", "_create_window", "_mainloop")
    if not all(hasattr(base, n) for n in needed):
        return base

    class OneThreadIcon(base):
        _DISPATCHED = ("_show", "_hide", "_update_icon", "_update_title", "_stop")
        ANSWER_SECONDS = 5.0

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._wake = Xlib.display.Display()
            self._wake_lock = threading.Lock()
            self._wake_window = self._wake.create_resource_object("window", self._window.id)
            for name in self._DISPATCHED:
                original = getattr(base, name).__get__(self)  # the class's, not pystray's dispatcher
                atom = self._display.intern_atom(f"_PYSTRAY_{name.upper()}")  # what pystray's loop handles
                setattr(self, name, self._dispatcher(original, atom))

        def _create_window(self):
            window = super()._create_window()
            # pystray handles ButtonPress but never asks X for it: as shipped, no click
            # reaches the icon (the click shows the preview: the menu's default item).
            window.change_attributes(event_mask=Xlib.X.ExposureMask | Xlib.X.StructureNotifyMask
                                     | Xlib.X.ButtonPressMask)
            self._display.flush()
            return window

        def _dispatcher(self, original, atom):
            def inner():
                loop = getattr(self, "_thread", None)
                if loop is None or threading.current_thread() is loop:
                    return original()
                with self._wake_lock:  # one request at a time: pystray has one answer queue
                    message = xevent.ClientMessage(window=self._wake_window, client_type=atom,
                                                   data=(32, (Xlib.X.CurrentTime, 0, 0, 0, 0)))
                    self._wake_window.send_event(message, event_mask=Xlib.X.NoEventMask)
                    self._wake.flush()
                    try:
                        result = self._queue.get(timeout=self.ANSWER_SECONDS)
                    except queue.Empty:
                        raise RuntimeError("the tray's event loop did not answer") from None
                if result is not True:
                    raise result[1].with_traceback(result[2])
            return inner

    return OneThreadIcon


def _quiet_dbus_icon(base, notifications: bool):
    """pystray's gtk or appindicator ``Icon``, changed so that a desktop without a
    notification service does not take it down.

    pystray connects its notifier to the session bus when the icon starts (with no bus
    that raises, after GLib tried to start one with ``dbus-launch``: no icon, and the
    daemon waited for it forever) and closes a notification when it stops (with no
    notification daemon that raises: every quit exited 1). Here the notifier is made
    only where ``notifications`` (a notification service is on the bus), and its
    failures are logged, not raised. Falls back to ``base`` if pystray's internals differ.
    """
    try:
        from pystray._util import notify_dbus
    except ImportError:
        return base
    if not hasattr(base, "_initialize") or not hasattr(base, "_mark_ready"):
        return base

    class QuietNotifier:
        def __init__(self):
            self._real = None
            if notifications:
                try:
                    self._real = notify_dbus.Notifier()
                except Exception as e:  # GLib.Error
                    log.info("no desktop notifications: %s", one_line(e))

        def notify(self, *args):
            if self._real is not None:
                try:
                    self._real.notify(*args)
                except Exception as e:
                    log.info("the notification was not shown: %s", one_line(e))

        def hide(self):
            if self._real is not None and self._real._nid:
                try:
                    self._real.hide()
                except Exception:
                    log.debug("closing the notification failed", exc_info=True)

    class QuietIcon(base):
        HAS_NOTIFICATION = notifications

        def _initialize(self):  # pystray's, with the notifier above
            import signal

            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)  # as pystray does: ctrl+c stays ctrl+c
            except ValueError:  # not the main thread
                pass
            self._notifier = QuietNotifier()
            self._mark_ready()

    return QuietIcon


def tray_problem() -> str | None:
    """Why there can be no tray here, or None."""
    problem = display_problem()
    return f"no display ({problem})" if problem else None


def x_has_system_tray() -> bool:
    """Whether an X system tray (a _NET_SYSTEM_TRAY_Sn selection owner) is running."""
    import Xlib.X
    import Xlib.display

    display = Xlib.display.Display()
    try:
        atom = display.intern_atom(f"_NET_SYSTEM_TRAY_S{display.get_default_screen()}")
        return display.get_selection_owner(atom) != Xlib.X.NONE
    finally:
        display.close()


def make_tray(daemon) -> Tray | None:
    """The tray for ``daemon``, or None (with one warning line) where there can be none.
    The backend is the one this desktop can show (``f2f_cam.desktop``)."""
    problem = tray_problem()
    desktop = None
    if problem is None:
        from f2f_cam import desktop as desktop_mod

        desktop = desktop_mod.probe()
        if desktop.backend is None:
            problem = desktop.why
    if problem is None:
        if not desktop.bus:
            os.environ.setdefault("NO_AT_BRIDGE", "1")  # GTK's accessibility bridge would look for a bus too
        try:
            tray = Tray(daemon, backend=desktop.backend, notifications=desktop.notifications)
        except Exception as e:  # ImportError, Xlib's display errors, a GTK that will not start...
            problem = f"pystray cannot start ({one_line(e)})"
    if problem is not None:
        log.warning("no tray icon: %s; running headless, control it with `f2f-cam ctl`", problem)
        return None
    log.info("tray icon: pystray %s backend (%s)", tray.backend, desktop.why)
    if desktop.bus is None:
        log.warning("no D-Bus session bus: no desktop notifications (errors go to the log)")
    elif not desktop.notifications:
        log.warning("no notification service on the session bus: no desktop notifications (errors go to the log)")
    if not tray.has_menu:
        from f2f_cam.desktop import menus_fix

        log.warning("this tray shows no menus (pystray %s backend); clicking the icon shows the preview, and "
                    "`f2f-cam ctl` switches persona, layout, pause or quit; for menus: %s",
                    tray.backend, menus_fix(desktop.missing or ["PyGObject"]))
    return tray
