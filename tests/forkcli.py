"""`f2f-cam ARGS` as a process of its own, without paying for Python's imports each time.

Most of a short command's time in the tests was importing torch, MediaPipe and OpenCV
(2-4 s on 2 cores) in a fresh interpreter. Here one server process imports them once
and forks a child per command: the child takes the test's environment, working folder
and output files, runs the console entry point (``f2f_cam.cli.main``) as the installed
script would, runs the exit handlers, and exits with its code. The server never runs a
torch operation, so no thread pool exists to be broken by the fork.

Linux only (fork); ``F2F_CAM_TEST_SUBPROCESS=1`` runs a fresh interpreter per command
instead, as a user's shell would.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

def server_script(preload: str, child: str) -> str:
    """A fork server: ``preload`` (imports, once), then a child per JSON line on stdin
    running ``child(request)``; it answers {"pid": ...} then {"exit": ...} (``Lines``)."""
    return f"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
{preload}
for line in sys.stdin:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        {child}(json.loads(line))
    print(json.dumps({{"pid": pid}}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({{"exit": os.waitstatus_to_exitcode(status)}}), flush=True)
"""


SERVER = server_script("""import torch, cv2, av, mediapipe
import f2f_cam.cli, f2f_cam.landmarks, f2f_cam.pipeline, f2f_cam.video
import forkcli""", "forkcli.child")


def child(req: dict) -> None:
    """In the forked child: the caller's environment, folder and output files, then the command."""
    import atexit
    import traceback

    code = 1
    try:
        os.environ.clear()
        os.environ.update(req["env"])
        os.chdir(req["cwd"])
        for fd, path in ((1, req["out"]), (2, req["err"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        sys.argv = ["f2f-cam", *req["argv"]]
        from f2f_cam.cli import main

        code = main(req["argv"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()  # what a normal exit runs: logging's flush, stopping helper processes
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


class Lines:
    """The fork server's answers: one JSON object a line, read with a deadline."""

    def __init__(self, stream):
        self.stream = stream
        self._buf = b""

    def read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.stream], [], [], left)[0]:
                raise TimeoutError("the fork server did not answer")
            chunk = os.read(self.stream.fileno(), 4096)
            if not chunk:
                raise RuntimeError("the fork server died")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)


class ForkServer:
    """One server; one command at a time (callers from several threads take turns)."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(HERE)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, cwd=HERE.parent)
        self._lines = Lines(self.proc.stdout)
        self.lock = threading.Lock()

    def _line(self, timeout: float) -> dict:
        return self._lines.read(timeout)

    def run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        with self.lock, tempfile.TemporaryDirectory(prefix="f2f-cli-") as tmp:
            out, err = Path(tmp) / "out", Path(tmp) / "err"
            req = {"env": dict(os.environ), "cwd": os.getcwd(), "argv": args, "out": str(out), "err": str(err)}
            self.proc.stdin.write(json.dumps(req).encode() + b"\n")
            self.proc.stdin.flush()
            pid = self._line(60)["pid"]
            try:
                code = self._line(timeout)["exit"]
            except TimeoutError:
                os.kill(pid, 9)
                self._line(30)
                raise subprocess.TimeoutExpired(["f2f-cam", *args], timeout) from None
            read = lambda p: p.read_text(encoding="utf-8", errors="replace") if p.exists() else ""  # noqa: E731
            return subprocess.CompletedProcess(["f2f-cam", *args], code, read(out), read(err))

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


_server: ForkServer | None = None


def server() -> ForkServer | None:
    """The session's fork server, started on first use; None where there is none to be had."""
    global _server
    if sys.platform != "linux" or os.environ.get("F2F_CAM_TEST_SUBPROCESS") == "1":
        return None
    if _server is None or _server.proc.poll() is not None:
        _server = ForkServer()
    return _server


def close() -> None:
    global _server
    if _server is not None:
        _server.close()
        _server = None
