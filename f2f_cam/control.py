"""The daemon's local control socket, and the client that ``f2f-cam ctl`` and scripts use.

Protocol: one JSON object per line (UTF-8). Request ``{"cmd": "...", "arg": ...}``;
reply ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.

Transport: a Unix socket ``control.sock`` in the user's runtime folder, mode 0600 (only
the user can connect). Where there is no AF_UNIX (Windows), a loopback TCP port plus a
random token, both in ``control.json`` that only the user can read; each request then
carries ``"token"``.

A client can never stall or crash the daemon: each connection is served by its own
short-lived thread with a timeout, a request is at most 64 KiB, and whatever a client
sends gets a reply or a disconnect. The handler runs in that thread, never in the
processing loop.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import selectors
import socket
import threading
import time
from pathlib import Path
from typing import Callable

from f2f_cam import paths
from f2f_cam.atomic import atomic_path
from f2f_cam.errors import UserError

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
TCP_INFO_NAME = "control.json"
MAX_REQUEST = 64 * 1024  # bytes per request line
CLIENT_TIMEOUT = 2.0  # seconds a connection may stay silent mid-request
MAX_CONNECTIONS = 16  # served at once; more get an error and are closed
NOT_RUNNING = "no f2f-cam daemon is running; start one with `f2f-cam run`"

Handler = Callable[[str, object], dict]


class NotRunning(UserError):
    """No daemon answers on the control socket."""

    def __init__(self, msg: str = NOT_RUNNING):
        super().__init__(msg)


def has_unix_sockets() -> bool:
    return hasattr(socket, "AF_UNIX")


def ensure_runtime_dir(folder: Path | None = None) -> Path:
    """The runtime folder, private to the user (0700): created so, or made so when it
    was there already (``F2F_CAM_RUNTIME_DIR``); one of another user's is refused."""
    folder = Path(folder or paths.runtime_dir())
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = folder.stat()
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            # Its owner could swap our socket for theirs, or read the TCP token.
            raise UserError(f"the runtime folder {folder} belongs to another user; "
                            "set F2F_CAM_RUNTIME_DIR to a folder you own")
        if os.name == "posix" and st.st_mode & 0o077:
            os.chmod(folder, 0o700)
            log.info("runtime folder %s made private (it was mode %o)", folder, st.st_mode & 0o777)
    except OSError as e:
        raise UserError(f"cannot create the runtime folder {folder} ({e.strerror}); "
                        "set F2F_CAM_RUNTIME_DIR to a folder you own") from e
    return folder


class ControlServer:
    """Serves ``handler(cmd, arg) -> dict`` on the control socket.

    ``handler`` raises ``UserError`` for a request it refuses; the message goes back as
    ``{"ok": false, "error": ...}``. Anything else it raises is a bug: logged, and the
    client gets a one-line internal error. The daemon keeps serving either way.
    """

    def __init__(self, handler: Handler, folder: Path | None = None, transport: str = "auto",
                 client_timeout: float = CLIENT_TIMEOUT):
        if transport == "auto":
            transport = "unix" if has_unix_sockets() else "tcp"
        if transport not in ("unix", "tcp"):
            raise ValueError(f"unknown transport {transport!r}; choose one of: auto, unix, tcp")
        self.handler = handler
        self.folder = ensure_runtime_dir(folder)
        self.transport = transport
        self.client_timeout = client_timeout
        self.token: str | None = None
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._stop = threading.Event()
        self._sock = self._bind_unix() if transport == "unix" else self._bind_tcp()
        self._thread = threading.Thread(target=self._accept_loop, name="control", daemon=True)
        self._thread.start()
        log.info("control socket: %s", self.address)

    @property
    def address(self) -> str:
        return str(self.folder / SOCKET_NAME) if self.transport == "unix" else \
            f"127.0.0.1:{self._sock.getsockname()[1]} (token in {self.folder / TCP_INFO_NAME})"

    # -- binding --------------------------------------------------------------------

    def _bind_unix(self) -> socket.socket:
        path = self.folder / SOCKET_NAME
        # The caller holds the daemon lock, so a socket file left here is stale.
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # created 0600: no window in which others could connect
        try:
            sock.bind(str(path))
        except OSError as e:
            sock.close()
            raise UserError(f"cannot create the control socket {path} ({e.strerror or e}); "
                            "set F2F_CAM_RUNTIME_DIR to a short folder you own") from e
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(MAX_CONNECTIONS)
        sock.setblocking(False)
        return sock

    def _bind_tcp(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(MAX_CONNECTIONS)
        sock.setblocking(False)
        self.token = secrets.token_hex(16)
        with atomic_path(self.folder / TCP_INFO_NAME) as tmp:
            # Created 0600 before the token is written: only the user can ever read it.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"port": sock.getsockname()[1], "token": self.token, "pid": os.getpid()}, f)
        return sock

    # -- serving --------------------------------------------------------------------

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                if not sel.select(timeout=0.2):
                    continue
                try:
                    conn, _ = self._sock.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    if self._stop.is_set():
                        return
                    log.warning("control socket: accept failed: %s", e)
                    continue
                conn.setblocking(True)
                conn.settimeout(self.client_timeout)
                if not self._slots.acquire(blocking=False):
                    self._send(conn, {"ok": False, "error": "too many control connections; try again"})
                    conn.close()
                    continue
                threading.Thread(target=self._serve, args=(conn,), name="control-client", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            buf = b""
            while not self._stop.is_set():
                # One deadline per request, not per recv: a client dripping a byte at a
                # time cannot hold its thread for longer than the timeout.
                deadline = time.monotonic() + self.client_timeout
                while b"\n" not in buf:
                    if len(buf) > MAX_REQUEST:
                        self._send(conn, {"ok": False, "error": f"request larger than {MAX_REQUEST} bytes"})
                        return
                    try:
                        conn.settimeout(max(0.01, deadline - time.monotonic()))
                        chunk = conn.recv(65536)
                    except socket.timeout:
                        if buf.strip():
                            self._send(conn, {"ok": False, "error": "incomplete request (timed out waiting "
                                                                    "for the end of the line)"})
                        return
                    if not chunk:
                        if buf.strip():  # sent without a newline, then shut down writing
                            self._send(conn, self._reply(buf))
                        return
                    buf += chunk
                line, buf = buf.split(b"\n", 1)
                if len(line) > MAX_REQUEST:
                    self._send(conn, {"ok": False, "error": f"request larger than {MAX_REQUEST} bytes"})
                    return
                if line.strip():
                    self._send(conn, self._reply(line))
        except OSError as e:  # the client went away mid-reply
            log.debug("control client: %s", e)
        finally:
            self._slots.release()
            conn.close()

    def _reply(self, line: bytes) -> dict:
        try:
            req = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return {"ok": False, "error": "malformed request: not a JSON object on one line"}
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            return {"ok": False, "error": 'malformed request: expected {"cmd": "...", "arg": ...}'}
        if self.token is not None and not secrets.compare_digest(str(req.get("token", "")), self.token):
            return {"ok": False, "error": "bad or missing token"}
        try:
            reply = self.handler(req["cmd"], req.get("arg"))
        except UserError as e:
            return {"ok": False, "error": str(e)}
        except Exception as e:  # a bug in a command must not take the daemon down
            log.exception("control command %r failed", req["cmd"])
            return {"ok": False, "error": f"internal error: {type(e).__name__}: {e}"}
        return {"ok": True, **(reply or {})}

    @staticmethod
    def _send(conn: socket.socket, obj: dict) -> None:
        conn.sendall(json.dumps(obj).encode("utf-8") + b"\n")

    def close(self) -> None:
        """Stop accepting and remove the socket (or token) file; safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()
        name = SOCKET_NAME if self.transport == "unix" else TCP_INFO_NAME
        (self.folder / name).unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ControlClient:
    """Talks to the running daemon: ``ControlClient().request("status")`` -> reply dict.

    Raises ``NotRunning`` when no daemon answers, ``UserError`` with the daemon's message
    when it refuses a request.
    """

    def __init__(self, folder: Path | None = None, timeout: float = 10.0):
        self.folder = Path(folder or paths.runtime_dir())
        self.timeout = timeout

    def _connect(self) -> tuple[socket.socket, str | None]:
        sock_path = self.folder / SOCKET_NAME
        info_path = self.folder / TCP_INFO_NAME
        try:
            if has_unix_sockets() and sock_path.exists():
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(self.timeout)
                try:
                    s.connect(str(sock_path))
                except OSError:
                    s.close()
                    raise
                return s, None
            if info_path.exists():
                info = json.loads(info_path.read_text(encoding="utf-8"))
                s = socket.create_connection(("127.0.0.1", int(info["port"])), timeout=self.timeout)
                return s, str(info["token"])
        except (OSError, ValueError, KeyError) as e:
            if isinstance(e, OSError) and e.errno not in (errno.ECONNREFUSED, errno.ENOENT, None):
                raise UserError(f"cannot reach the f2f-cam daemon ({e.strerror or e})") from e
            raise NotRunning() from e  # a stale socket file: the daemon has gone
        raise NotRunning()

    def request(self, cmd: str, arg=None) -> dict:
        sock, token = self._connect()
        req = {"cmd": cmd, "arg": arg}
        if token is not None:
            req["token"] = token
        with sock:
            try:
                sock.sendall(json.dumps(req).encode("utf-8") + b"\n")
                buf = b""
                while b"\n" not in buf:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
            except socket.timeout as e:
                raise UserError(f"the f2f-cam daemon did not answer '{cmd}' within {self.timeout:g} s") from e
            except OSError as e:
                raise NotRunning() from e
        if not buf:
            raise NotRunning("the f2f-cam daemon closed the connection without answering (is it quitting?)")
        try:
            reply = json.loads(buf.split(b"\n", 1)[0].decode("utf-8"))
        except ValueError as e:
            raise UserError(f"the f2f-cam daemon sent a malformed reply to '{cmd}'") from e
        if not reply.get("ok"):
            raise UserError(reply.get("error") or f"'{cmd}' failed")
        return reply
