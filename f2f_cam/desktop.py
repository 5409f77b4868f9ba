"""What the Linux desktop can show of a tray icon, and which pystray backend fits it.

pystray tries appindicator, gtk, xorg in that order and takes the first that imports,
whatever the desktop runs: an AppIndicator icon nobody hosts, or no icon at all when
PyGObject is there but a typelib is not. ``probe()`` asks the desktop instead:

- a StatusNotifierItem host (KDE, GNOME with its AppIndicator extension, Cinnamon,
  XFCE's panel plugin) -> ``appindicator``, if the AppIndicator and GTK 3 typelibs load;
- an XEmbed system tray (``_NET_SYSTEM_TRAY_S0``: trayer, stalonetray, older panels)
  -> ``gtk`` with GTK 3, else ``xorg`` (an icon whose click shows the preview, no menu);
- neither -> no icon (the daemon runs headless, ``f2f-cam ctl`` controls it).

Without a D-Bus session bus there is no StatusNotifierItem host to find and no
notifications to show; the bus is never started here (GLib would run ``dbus-launch``).
``python -m f2f_cam.desktop`` prints the probe as JSON (``f2f-cam doctor`` runs it in a
process of its own, with a timeout).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

SNI_WATCHER = "org.kde.StatusNotifierWatcher"
NOTIFICATIONS = "org.freedesktop.Notifications"
INDICATOR_TYPELIBS = ("AyatanaAppIndicator3", "AppIndicator3")  # what pystray's backend imports, in its order
BUS_TIMEOUT_MS = 1000

# What menus need from the system, per package manager: GTK 3 and AppIndicator typelibs,
# and what `pip install PyGObject` builds against (cairo, gobject-introspection).
TRAY_PACKAGES = {
    "apt-get": "pkg-config gcc python3-dev libcairo2-dev libgirepository1.0-dev gir1.2-gtk-3.0 "
               "gir1.2-ayatanaappindicator3-0.1",
    "dnf": "pkgconf-pkg-config gcc python3-devel cairo-devel cairo-gobject-devel gobject-introspection-devel "
           "gtk3 libayatana-appindicator-gtk3",
    "pacman": "pkgconf gcc cairo gobject-introspection gtk3 libayatana-appindicator",
}
TYPELIB_PACKAGES = {  # the one package a missing typelib comes in
    "Gtk": {"apt-get": "gir1.2-gtk-3.0", "dnf": "gtk3", "pacman": "gtk3"},
    "AppIndicator": {"apt-get": "gir1.2-ayatanaappindicator3-0.1", "dnf": "libayatana-appindicator-gtk3",
                     "pacman": "libayatana-appindicator"},
}


@dataclasses.dataclass
class Desktop:
    display: str | None  # $DISPLAY or $WAYLAND_DISPLAY
    gi: str | None  # PyGObject's version, None if it does not import
    gtk: bool  # the GTK 3 typelib is there
    indicator: str | None  # the AppIndicator typelib pystray will use
    bus: str | None  # the session bus address, None without one
    sni_host: bool  # a StatusNotifierItem host on that bus
    notifications: bool  # a notification daemon on that bus (running or startable)
    xembed: bool  # an X system tray
    backend: str | None  # the pystray backend to use; None: no icon
    why: str  # one line: why that backend, or why none
    missing: list[str]  # what menus would need here ("PyGObject", "Gtk", "AppIndicator")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def session_bus_address(env=os.environ) -> str | None:
    """The session bus's address: $DBUS_SESSION_BUS_ADDRESS, or systemd's
    $XDG_RUNTIME_DIR/bus socket; None when there is none."""
    address = env.get("DBUS_SESSION_BUS_ADDRESS")
    if address:
        return address
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and os.path.exists(os.path.join(runtime, "bus")):
        return f"unix:path={os.path.join(runtime, 'bus')}"
    return None


def _gi_typelibs() -> tuple[str | None, bool, str | None]:
    """(PyGObject version, GTK 3 typelib there, AppIndicator typelib name): checked
    with ``gi.require_version``, which loads no library."""
    try:
        import gi
    except ImportError:
        return None, False, None
    version = getattr(gi, "__version__", "?")

    def has(namespace, wanted):
        try:
            gi.require_version(namespace, wanted)
            return True
        except ValueError:  # "Namespace X not available" (or another version was required first)
            return False

    gtk = has("Gtk", "3.0")
    indicator = next((n for n in INDICATOR_TYPELIBS if has(n, "0.1")), None)
    return version, gtk, indicator


def _bus_names(address: str, names: tuple[str, ...]) -> dict[str, bool]:
    """Which of ``names`` have an owner on the bus at ``address`` or can be started there.
    Everything False when the bus does not answer."""
    from gi.repository import Gio, GLib

    found = dict.fromkeys(names, False)
    try:
        flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
        conn = Gio.DBusConnection.new_for_address_sync(address, flags, None, None)

        def call(method, args, reply):
            return conn.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", method,
                                  args, GLib.VariantType(reply), Gio.DBusCallFlags.NONE, BUS_TIMEOUT_MS,
                                  None).unpack()[0]

        startable = set(call("ListActivatableNames", None, "(as)"))
        for name in names:
            found[name] = bool(call("NameHasOwner", GLib.Variant("(s)", (name,)), "(b)")) or name in startable
        conn.close_sync(None)
    except Exception:  # GLib.Error: no such socket, refused, not a bus...
        pass
    return found


def _x_system_tray() -> bool:
    if not os.environ.get("DISPLAY"):
        return False
    try:
        from f2f_cam.tray import x_has_system_tray

        return x_has_system_tray()
    except Exception:  # no python-xlib, a display that refuses us
        return False


def probe(env=os.environ) -> Desktop:
    """Ask this desktop what it has, and choose the backend (see the module's doc)."""
    display = env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")
    gi_version, gtk, indicator = _gi_typelibs()
    bus = session_bus_address(env)
    names = _bus_names(bus, (SNI_WATCHER, NOTIFICATIONS)) if bus and gi_version else {}
    xembed = _x_system_tray()
    d = Desktop(display=display, gi=gi_version, gtk=gtk, indicator=indicator, bus=bus,
                sni_host=names.get(SNI_WATCHER, False), notifications=names.get(NOTIFICATIONS, False),
                xembed=xembed, backend=None, why="", missing=[])
    d.backend, d.why, d.missing = choose(d, env.get("PYSTRAY_BACKEND"))
    return d


def choose(d: Desktop, forced: str | None = None) -> tuple[str | None, str, list[str]]:
    """(backend, why, what menus still need) for what ``d`` found."""
    missing = [] if d.gi else ["PyGObject"]
    if d.gi and not d.gtk:
        missing.append("Gtk")
    if forced:
        return forced, f"PYSTRAY_BACKEND={forced}", missing
    if not d.display:
        return None, "no display", missing
    if d.sni_host and not d.indicator:
        missing.append("AppIndicator")
    if d.sni_host and d.gtk and d.indicator:
        return "appindicator", "a StatusNotifierItem host is on the session bus", []
    if d.xembed and d.gtk:
        return "gtk", "an XEmbed system tray is running", []
    if d.xembed:
        return "xorg", "an XEmbed system tray is running, but GTK 3 is not here for menus", missing
    if d.sni_host:
        return None, "a StatusNotifierItem host is running, but the AppIndicator typelib is missing", missing
    if not d.bus:
        return None, "no system tray: no XEmbed tray, and no D-Bus session bus to find a StatusNotifierItem host on", missing
    return None, ("no system tray: no XEmbed tray and no StatusNotifierItem host (on GNOME: the AppIndicator "
                  "extension, gnome-shell-extension-appindicator)"), missing


def package_manager() -> str | None:
    return next((pm for pm in ("apt-get", "dnf", "pacman") if shutil.which(pm)), None)


def pygobject_requirement() -> str:
    """PyGObject 3.51+ builds against girepository-2.0 (GLib 2.80+); Debian 12 and
    Ubuntu 22.04 have only girepository-1.0, for which 3.50 is the last."""
    if shutil.which("pkg-config"):
        try:
            ok = subprocess.run(["pkg-config", "--exists", "girepository-2.0"], timeout=5).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if ok:
            return "PyGObject"
    return "PyGObject<3.51"


def menus_fix(missing: list[str], python: str = sys.executable) -> str:
    """One line that gets menus here: the packages, then PyGObject into f2f-cam's Python."""
    pm = package_manager()
    sudo = "sudo " if os.geteuid() != 0 else ""
    install = {"apt-get": "apt-get install -y", "dnf": "dnf install -y", "pacman": "pacman -S --needed"}
    if "PyGObject" in missing:
        pip = f"{python} -m pip install '{pygobject_requirement()}'"
        if pm is None:
            return f"install GTK 3, AppIndicator and the cairo/gobject-introspection headers, then {pip}"
        return f"{sudo}{install[pm]} {TRAY_PACKAGES[pm]} && {pip} (installer/linux/install.sh does both)"
    packages = [TYPELIB_PACKAGES[m][pm] for m in missing if m in TYPELIB_PACKAGES and pm]
    if not packages:
        return "install GTK 3 and AppIndicator (Ayatana) with their GObject introspection typelibs"
    return f"{sudo}{install[pm]} {' '.join(packages)}"


if __name__ == "__main__":
    print(json.dumps(probe().as_dict()))
