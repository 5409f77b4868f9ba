"""The control commands: one table that the daemon dispatches from, ``f2f-cam ctl``
builds its subcommands from, and the tray labels its items from.

Each ``Command`` names the ``Daemon`` method it calls and what its argument is; the
control socket hands ``dispatch`` a request, and the reply carries the new status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from f2f_cam.errors import UserError
from f2f_cam.registry import Registry

ON_OFF = ("on", "off")


def on_off(value, what: str) -> bool:
    """A switch argument: true/false, on/off, 1/0, yes/no."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("on", "true", "1", "yes"):
        return True
    if text in ("off", "false", "0", "no"):
        return False
    raise UserError(f"{what} takes on or off, not {value!r}")


@dataclass(frozen=True)
class Command:
    """One control command.

    arg: None (no argument), "on/off" (a switch), or what the free-text argument is
    ("a persona name"); shows: the status field ``ctl`` prints after the change;
    label: the tray's menu item ("" for commands the tray shows another way).
    """

    name: str
    help: str
    call: Callable  # (daemon, arg) -> a reply message or None
    arg: str | None = None
    metavar: str = ""
    shows: str | None = None
    label: str = ""

    def __call__(self, daemon, arg) -> str | None:
        if self.arg == "on/off":
            return self.call(daemon, on_off(arg, self.name))
        if self.arg is not None:
            if not isinstance(arg, str) or not arg:
                raise UserError(f"'{self.name}' needs {self.arg}")
            return self.call(daemon, arg)
        return self.call(daemon)


def _calibrated(daemon) -> str:
    return f"neutral face calibrated; retarget {daemon.calibrate()}"


def _quit(daemon) -> str:
    daemon.quit()
    return "f2f-cam daemon is quitting"


COMMANDS: Registry[Command] = Registry("command", {c.name: c for c in (
    Command("status", "What the daemon is doing: persona, layout, fps, latency, camera, output.",
            lambda d: None),
    Command("persona", "Switch to persona NAME (see `f2f-cam personas list`).",
            lambda d, a: d.set_persona(a), arg="a persona name", metavar="NAME", shows="persona", label="Persona"),
    Command("layout", "Switch layout: persona | side-by-side | landmarks | camera.",
            lambda d, a: d.set_layout(a), arg="a layout name", metavar="NAME", shows="layout", label="Layout"),
    Command("retarget", "Switch retargeting: expression | raw | align | transfer.",
            lambda d, a: d.set_retarget(a), arg="a mode: expression, raw, align or transfer", metavar="MODE", shows="retarget"),
    Command("mirror", "Mirror the camera on or off.",
            lambda d, on: d.set_mirror(on), arg="on/off", shows="mirror", label="Mirror"),
    Command("pause", "Freeze the output on the last frame.",
            lambda d: d.set_paused(True) or "paused", label="Pause"),
    Command("resume", "Resume after pause.", lambda d: d.set_paused(False) or "resumed"),
    Command("calibrate", "Take your face now as your neutral face (look at the camera, relaxed).",
            _calibrated, shows="retarget", label="Calibrate neutral face"),
    Command("preview", "Show or hide the preview window.",
            lambda d, on: d.set_preview(on), arg="on/off", shows="preview", label="Show preview window"),
    Command("landmarks", "Show the landmark sketch (on), or go back to the layout before (off).",
            lambda d, on: d.show_landmarks(on), arg="on/off", shows="layout", label="Show landmarks"),
    Command("passthrough", "Pass the camera through unchanged (on), or go back to the layout before (off).",
            lambda d, on: d.set_passthrough(on), arg="on/off", shows="layout"),
    Command("quit", "Stop the daemon (the virtual camera goes away).", _quit, label="Quit"),
)})


def reply_text(cmd: str, reply: dict) -> str:
    """A command's reply in one line (``ctl`` prints it, the preview window shows it):
    its message, else the status field it changed ("mirror: on")."""
    if reply.get("message"):
        return reply["message"]
    shows = COMMANDS[cmd].shows
    value = reply.get("status", {}).get(shows) if shows else None
    if isinstance(value, bool):
        value = "on" if value else "off"
    return f"{shows}: {value}"


def dispatch(daemon, cmd: str, arg=None) -> dict:
    """One control request -> the reply's fields: the new status, and a message."""
    message = COMMANDS[cmd](daemon, arg)
    reply = {"status": daemon.status().as_dict()}
    if message:
        reply["message"] = message
    return reply
