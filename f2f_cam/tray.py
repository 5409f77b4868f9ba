"""The tray icon: a menu that calls the daemon's methods, and an icon that shows its state.

No policy lives here: every item runs one entry of the command table
(``f2f_cam.commands.COMMANDS``, which also labels it), and every check mark reads
the daemon's ``DaemonStatus``. ``pystray`` is imported only when a tray is made, never
at import time (``import pystray`` fails on a machine with no display).
"""

from __future__ import annotations

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

    def __init__(self, daemon, *, background: bool = True, exit_on_hang: bool = True):
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
        icon_cls = pystray.Icon
        if icon_cls.__module__.endswith("._xorg"):
            icon_cls = _one_thread_xorg_icon(icon_cls)
        self.icon = icon_cls("f2f-cam", draw_icon(self._state), title_for(st), menu=self.menu())

    @property
    def has_menu(self) -> bool:
        return bool(self._pystray.Icon.HAS_MENU)

    @property
    def backend(self) -> str:
        """pystray's backend: xorg, gtk, appindicator, win32, darwin or dummy."""
        return self._pystray.Icon.__module__.rsplit(".", 1)[-1].lstrip("_")

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
    """The tray for ``daemon``, or None (with a warning) where there can be none."""
    problem = tray_problem()
    if problem is None:
        try:
            tray = Tray(daemon)
        except Exception as e:  # ImportError, Xlib's display errors, a missing GTK...
            problem = f"pystray cannot start ({one_line(e)})"
        else:
            if tray.backend == "xorg" and not x_has_system_tray():
                # pystray's xorg backend would log a traceback on every icon change and
                # can hang when it stops; with no tray to dock into, run headless.
                problem = "this X display has no system tray to dock into"
    if problem is not None:
        log.warning("no tray icon: %s; running headless, control it with `f2f-cam ctl`", problem)
        return None
    if not tray.has_menu:
        log.warning("this desktop's tray shows no menus (pystray %s backend); use `f2f-cam ctl` to switch "
                    "persona, layout, pause or quit (e.g. `f2f-cam ctl persona NAME`); clicking the icon "
                    "shows the preview", tray.backend)
    return tray
