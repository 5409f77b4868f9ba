"""Where f2f-cam keeps things: platformdirs locations and the bundled models folder.

Every location can be moved with an environment variable (``F2F_CAM_DATA_DIR`` and
friends) so tests and portable installs never touch the real user folders.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

APP_NAME = "f2f-cam"


def _dir(env: str, kind: str) -> Path:
    """``$env`` if set, else platformdirs' ``user_<kind>_path`` for f2f-cam."""
    value = os.environ.get(env)
    if value:
        return Path(value).expanduser()
    import warnings

    import platformdirs

    with warnings.catch_warnings():
        # Without XDG_RUNTIME_DIR, platformdirs warns and falls back to a folder in
        # /tmp that is private to the user: a fine place for our socket and lock.
        warnings.simplefilter("ignore")
        return Path(getattr(platformdirs, f"user_{kind}_path")(APP_NAME))


def data_dir() -> Path:
    """User data folder (personas live in ``personas/`` below it)."""
    return _dir("F2F_CAM_DATA_DIR", "data")


def personas_dir() -> Path:
    """The user's persona store: one folder per installed persona."""
    return data_dir() / "personas"


def config_dir() -> Path:
    return _dir("F2F_CAM_CONFIG_DIR", "config")


def config_file() -> Path:
    return config_dir() / "config.toml"


def cache_dir() -> Path:
    return _dir("F2F_CAM_CACHE_DIR", "cache")


def runtime_dir() -> Path:
    """Per-user runtime folder (the control socket and the daemon lock)."""
    return _dir("F2F_CAM_RUNTIME_DIR", "runtime")


def log_dir() -> Path:
    return _dir("F2F_CAM_LOG_DIR", "log")


def daemon_log() -> Path:
    """The running daemon's log file (``f2f-cam run`` writes INFO and up to it)."""
    return log_dir() / "daemon.log"


def bundled_models_dir() -> Path:
    """The folder of files shipped with f2f-cam (``models/`` in a checkout).

    Installed, ``models/`` is the package ``f2f_cam.models``; running from a checkout
    without installing, it is the ``models/`` folder beside ``f2f_cam/``.
    """
    try:
        path = Path(str(resources.files("f2f_cam.models")))
        if path.is_dir():
            return path
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "models"


def bundled_personas_dir() -> Path:
    """Personas shipped with f2f-cam; ``F2F_CAM_BUNDLED_PERSONAS_DIR`` points elsewhere
    (an empty folder hides the bundled demo persona)."""
    value = os.environ.get("F2F_CAM_BUNDLED_PERSONAS_DIR")
    return Path(value).expanduser() if value else bundled_models_dir() / "personas"
