"""What the preview window draws over the frames, and what its keys do.

Pure functions of the daemon's status (the dict that ``f2f-cam ctl status --json``
prints), so they are tested without a window or a daemon. The window's process
(``sinks.window``) calls them; nothing here reaches the published camera frames: the
overlay is drawn on the window's own BGR copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from f2f_cam.errors import UserError
from f2f_cam.tray import STATE_COLORS

MIN_WIDTH = 640  # px: a smaller output is shown scaled up, so that the overlay stays legible
NO_DAEMON = "no daemon: this window only shows frames (H: help, Q: close)"

Request = tuple[str, object]  # (control command, argument), as ``ControlClient.request`` takes them


def _persona(key: str, st: dict) -> Request:
    names, n = st.get("personas") or [], int(key)
    if n > len(names):
        have = f"1-{len(names)}" if len(names) > 1 else "1" if names else "none"
        raise UserError(f"no persona {n}: {len(names)} installed ({have})")
    return "persona", names[n - 1]


def _on_off(on: bool) -> str:
    return "on" if on else "off"


@dataclass(frozen=True)
class Shortcut:
    """One key, or a row of keys, of the preview window.

    keys: the characters that press it, lower case (either case works); label: how
    the help panel names them; request: (key, status) -> the control request it sends,
    raising ``UserError`` when it cannot; window: what the window does itself instead
    ("help" or "close").
    """

    keys: str
    label: str
    help: str
    request: Callable[[str, dict], Request] | None = None
    window: str | None = None


SHORTCUTS = (
    Shortcut("123456789", "1-9", "persona 1..9 (listed below)", _persona),
    Shortcut("l", "L", "landmarks on/off", lambda k, st: ("landmarks", _on_off(st.get("layout") != "landmarks"))),
    Shortcut("m", "M", "mirror on/off", lambda k, st: ("mirror", _on_off(not st.get("mirror")))),
    Shortcut("c", "C", "calibrate: your face now is neutral", lambda k, st: ("calibrate", None)),
    Shortcut("p", "P", "pause / resume", lambda k, st: ("resume" if st.get("paused") else "pause", None)),
    # Passthrough shows as the camera layout; off goes back to the layout before.
    Shortcut(" ", "Space", "passthrough (the real camera) on/off",
             lambda k, st: ("passthrough", _on_off(st.get("layout") != "camera"))),
    Shortcut("h", "H", "this help", window="help"),
    Shortcut("q\x1b", "Q, Esc", "close the window", window="close"),
)
KEYS: dict[str, Shortcut] = {k: s for s in SHORTCUTS for k in s.keys}


def key_of(code: int) -> str | None:
    """``cv2.waitKey``'s code -> the lower-case key it names, or None (no key, or not ours)."""
    if code < 0:
        return None
    key = chr(code & 0xFF).lower()  # & 0xFF: some HighGUI builds set modifier bits above
    return key if key in KEYS else None


def request_for(key: str, status: dict | None) -> Request:
    """The control request that ``key`` (a daemon key) sends, given the newest status.

    Raises ``UserError`` saying why not: no daemon, or a persona number not installed.
    """
    shortcut = KEYS[key]
    if shortcut.request is None:
        raise ValueError(f"key {key!r} is the window's own ({shortcut.window}), not a request")
    if status is None:
        raise UserError(NO_DAEMON)
    return shortcut.request(key, status)


# -- the overlay ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Overlay:
    """The text drawn over a frame; equal overlays look the same (the window redraws on change)."""

    lines: tuple[str, ...]  # top left: who, layout, fps
    state: str = ""  # running | paused | no face | camera lost | no daemon ("" unknown)
    message: str = ""  # bottom: the last key's outcome, for a moment
    help: tuple[str, ...] = ()  # the help panel, when open


def overlay(title: str, status: dict | None, fps: float, *, daemon: bool, lost: bool = False,
            message: str = "", show_help: bool = False) -> Overlay:
    """What the window shows over its frames.

    status: the daemon's newest (None before the first, or without a daemon); fps: the
    frames this window shows per second; daemon: whether it talks to one; lost: the
    daemon stopped answering.
    """
    if status is not None and not lost:
        lines = (status.get("persona_display_name") or status.get("persona") or "no persona",
                 "  ".join([status.get("layout") or "-", f"{status.get('fps') or 0:.0f} fps"]
                           + (["mirror"] if status.get("mirror") else [])))
        state = status.get("state") or ""
    else:
        lines = (title, f"{fps:.0f} fps")
        state = "no daemon" if daemon and lost else ""
    return Overlay(lines, state, message, help_lines(status if daemon else None) if show_help else ())


def help_lines(status: dict | None) -> tuple[str, ...]:
    """The help panel: every shortcut, then the personas that 1-9 pick (* the current one)."""
    rows = [f"{s.label}\t{s.help}" for s in SHORTCUTS]  # \t: the next column
    if status is None:
        return ("Keys", *rows, "", "No daemon here: only H and Q work.")
    names = (status.get("personas") or [])[:9]
    picks = [f"{'*' if n == status.get('persona') else ' '}{i} {n[:14]}" for i, n in enumerate(names, 1)]
    picks = ["  ".join(picks[i:i + 3]) for i in range(0, len(picks), 3)] or ["(no personas installed)"]
    return ("Keys", *rows, "", "Personas:", *picks)


# -- drawing ------------------------------------------------------------------------------------

WHITE, GREY, YELLOW = (255, 255, 255), (190, 190, 190), (80, 220, 255)  # BGR


def display_size(width: int, height: int) -> tuple[int, int]:
    """The window's size for frames of ``width`` x ``height``: scaled up to ``MIN_WIDTH``."""
    if width >= MIN_WIDTH:
        return width, height
    return MIN_WIDTH, round(height * MIN_WIDTH / width)


def draw(bgr: np.ndarray, ov: Overlay) -> np.ndarray:
    """Draw ``ov`` onto ``bgr`` (uint8 (H, W, 3), the window's own copy) and return it."""
    import cv2

    h, w = bgr.shape[:2]
    scale = float(np.clip(h / 720 * 0.8, 0.45, 1.2))
    text = _Text(cv2, bgr, scale)
    pad = text.line // 3
    if ov.help:  # first: the status and a message stay readable on top of it
        _help_panel(cv2, bgr, ov.help, scale)
    # Top left: who and what, with the state as a coloured dot.
    rows = list(ov.lines) + ([ov.state] if ov.state else [])
    x1 = pad * 3 + max(text.width(r) for r in rows) + (text.line if ov.state else 0)
    _shade(bgr, 0, 0, min(w, x1), pad * 2 + text.line * len(rows), 0.45)
    for i, row in enumerate(ov.lines):
        text.put(row, pad * 2, pad + text.line * (i + 1), WHITE if i == 0 else GREY)
    if ov.state:
        y = pad + text.line * len(rows)
        rgb = STATE_COLORS.get(ov.state, STATE_COLORS["no face"])  # the tray icon's badge colours
        cv2.circle(bgr, (pad * 2 + text.line // 3, y - text.line // 3), text.line // 3, rgb[::-1], -1, cv2.LINE_AA)
        text.put(ov.state, pad * 2 + text.line, y, WHITE)
    hint = "H: help"
    text.put(hint, w - text.width(hint) - pad * 2, h - pad * 2, WHITE, shadow=True)
    if ov.message:
        _shade(bgr, 0, h - text.line * 2 - pad, text.width(ov.message) + pad * 4, h - text.line + pad, 0.45)
        text.put(ov.message, pad * 2, h - text.line - pad, YELLOW)
    return bgr


def _help_panel(cv2, bgr: np.ndarray, rows: tuple[str, ...], scale: float) -> None:
    """A dark box in the middle, shrunk until every row fits; a tab starts a row's second
    column (the font is proportional: spaces would not line the columns up)."""
    h, w = bgr.shape[:2]
    cells = [row.split("\t", 1) for row in rows]
    while True:
        text = _Text(cv2, bgr, scale)
        gap = text.line // 2
        first = max((text.width(c[0]) for c in cells if len(c) == 2), default=0) + gap
        width = max(text.width(c[0]) if len(c) == 1 else first + text.width(c[1]) for c in cells) + gap * 2
        height = text.line * (len(rows) + 1)
        if (width <= w * 0.94 and height <= h * 0.94) or scale <= 0.3:
            break
        scale *= 0.9
    x0, y0 = max(0, (w - width) // 2), max(0, (h - height) // 2)
    _shade(bgr, x0, y0, x0 + width, y0 + height, 0.2)
    for i, row in enumerate(cells):
        y = y0 + text.line * (i + 1)
        text.put(row[0], x0 + gap, y, YELLOW if i == 0 or len(row) == 2 else WHITE)
        if len(row) == 2:
            text.put(row[1], x0 + gap + first, y, WHITE)


class _Text:
    """cv2.putText at one size: ``line`` px per row."""

    def __init__(self, cv2, img: np.ndarray, scale: float):
        self.cv2, self.img, self.scale = cv2, img, scale
        self.font = cv2.FONT_HERSHEY_SIMPLEX
        self.thick = 1 if scale < 0.7 else 2
        self.line = int(cv2.getTextSize("Ag", self.font, scale, self.thick)[0][1] * 2.0)

    def width(self, s: str) -> int:
        return self.cv2.getTextSize(s, self.font, self.scale, self.thick)[0][0]

    def put(self, s: str, x: int, y: int, color, shadow: bool = False) -> None:
        if shadow:  # legible on any picture, without a box
            self.cv2.putText(self.img, s, (x + 1, y + 1), self.font, self.scale, (0, 0, 0), self.thick + 1,
                             self.cv2.LINE_AA)
        self.cv2.putText(self.img, s, (x, y), self.font, self.scale, color, self.thick, self.cv2.LINE_AA)


def _shade(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, keep: float) -> None:
    """Darken a box in place: ``keep`` of the picture shows through."""
    box = img[max(0, y0):max(0, y1), max(0, x0):max(0, x1)]
    box[:] = (box.astype(np.uint16) * int(keep * 256)) >> 8  # integer maths: no float copy of the box
