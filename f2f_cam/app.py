"""``f2f-cam run``: the one place that wires it all (ActivityWatch aw-qt's ``main.py``):
logging to a file, the daemon (which takes the one-per-user lock), signals, and the
tray on the main thread or headless.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Callable

from f2f_cam import paths
from f2f_cam.config import DaemonConfig, PipelineConfig
from f2f_cam.daemon import Daemon
from f2f_cam.errors import UserError, one_line

log = logging.getLogger(__name__)


def serve(cfg: DaemonConfig, pipeline_cfg: PipelineConfig, *, seconds: float | None = None) -> dict:
    """``f2f-cam run``: start the daemon, then run the tray on this (main) thread, or
    wait headless, until ``ctl quit``, the tray's Quit, a signal, or ``seconds``."""
    file_log = _log_to_file()
    try:
        daemon = Daemon(cfg, pipeline_cfg).start()
        restore = _stop_on_signals(daemon)
        timer = None
        if seconds is not None:
            timer = threading.Timer(seconds, daemon.request_stop)
            timer.daemon = True
            timer.start()
        try:
            tray = None
            if cfg.tray:
                from f2f_cam.tray import make_tray

                tray = make_tray(daemon)
            if tray is not None:
                try:
                    tray.run()  # returns once the daemon is asked to stop
                except Exception as e:  # the desktop took the icon away: the camera stays
                    log.warning("the tray icon stopped (%s); running headless, control it with `f2f-cam ctl`",
                                one_line(e))
                    log.debug("the tray icon stopped", exc_info=True)
            daemon.wait()
        finally:
            restore()
            if timer is not None:
                timer.cancel()
            daemon.stop()
        if daemon.error:
            raise UserError(daemon.error)
        return daemon.summary()
    finally:
        _remove_file_log(file_log)


def _stop_on_signals(daemon: Daemon) -> Callable[[], None]:
    """SIGINT/SIGTERM ask the daemon to stop cleanly (the virtual camera is closed,
    the file finished); a second one is handled as before. Returns a function that
    puts the old handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    saved = {}

    def on_signal(sig, _frame):
        daemon.request_stop()
        # A second one acts at once, in case stopping itself hangs.
        signal.signal(sig, saved.get(sig, signal.SIG_DFL))

    for name in ("SIGINT", "SIGTERM"):
        sig = getattr(signal, name, None)
        if sig is not None:
            saved[sig] = signal.signal(sig, on_signal)

    def restore():
        for sig, handler in saved.items():
            signal.signal(sig, handler)

    return restore


def _log_to_file():
    """The daemon runs for hours, often with no terminal: INFO and up also go to
    ``daemon.log`` in the user log folder (rotated at 1 MB)."""
    from logging.handlers import RotatingFileHandler

    try:
        path = paths.daemon_log()
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(path, maxBytes=1 << 20, backupCount=2, encoding="utf-8")
    except OSError as e:
        log.warning("no log file: %s", e)
        return None
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root, pkg = logging.getLogger(), logging.getLogger("f2f_cam")
    # The terminal keeps its level (WARNING unless --verbose) while the file gets INFO.
    for h in root.handlers:
        if h.level == logging.NOTSET:
            h.setLevel(root.level)
    saved_level = pkg.level
    if pkg.getEffectiveLevel() > logging.INFO:
        pkg.setLevel(logging.INFO)
    pkg.addHandler(handler)
    return handler, saved_level


def _remove_file_log(state) -> None:
    if state is None:
        return
    handler, level = state
    pkg = logging.getLogger("f2f_cam")
    pkg.removeHandler(handler)
    pkg.setLevel(level)
    handler.close()
