"""The control socket: protocol, permissions, and clients that misbehave."""

import json
import os
import socket
import stat
import threading
import time

import pytest

from f2f_cam import paths
from f2f_cam.control import MAX_REQUEST, ControlClient, ControlServer, NotRunning
from f2f_cam.errors import UserError

from conftest import run_cli


def handler(cmd, arg):
    if cmd == "echo":
        return {"arg": arg}
    if cmd == "refuse":
        raise UserError("refused, and here is why")
    if cmd == "crash":
        raise RuntimeError("a bug")
    raise UserError(f"unknown command '{cmd}'")


@pytest.fixture
def server():
    with ControlServer(handler, client_timeout=0.5) as srv:
        yield srv


def raw(srv) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(srv.folder / "control.sock"))
    return s


def recv_line(s) -> dict:
    """One reply line (byte by byte: the next line stays in the socket)."""
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(1)
        if not chunk:
            break
        buf += chunk
    return json.loads(buf) if buf else {}


def test_requests_and_replies(server):
    client = ControlClient()
    assert client.request("echo", {"x": [1, 2]}) == {"ok": True, "arg": {"x": [1, 2]}}
    with pytest.raises(UserError, match="refused, and here is why"):
        client.request("refuse")
    with pytest.raises(UserError, match="internal error: RuntimeError: a bug"):
        client.request("crash")
    # Several requests on one connection, one reply per line.
    with raw(server) as s:
        s.sendall(b'{"cmd": "echo", "arg": 1}\n{"cmd": "echo", "arg": 2}\n')
        f = s.makefile("rb")
        assert [json.loads(f.readline())["arg"] for _ in range(2)] == [1, 2]


def test_socket_is_private_to_the_user(server):
    mode = os.stat(server.folder / "control.sock").st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(os.stat(server.folder).st_mode) == 0o700
    assert server.folder == paths.runtime_dir()


@pytest.mark.parametrize("payload, error", [
    (b"not json at all\n", "malformed request"),
    (b"\xff\xfe\x00garbage\n", "malformed request"),
    (b"[1, 2, 3]\n", 'expected {"cmd"'),
    (b'{"cmd": 5}\n', 'expected {"cmd"'),
    (b'{"arg": "no cmd"}\n', 'expected {"cmd"'),
])
def test_garbage_gets_an_error_and_the_server_keeps_serving(server, payload, error):
    with raw(server) as s:
        s.sendall(payload)
        reply = recv_line(s)
    assert reply["ok"] is False and error in reply["error"]
    assert ControlClient().request("echo", "still here")["arg"] == "still here"


def test_oversized_request_is_refused(server):
    with raw(server) as s:
        try:
            s.sendall(b'{"cmd": "echo", "arg": "' + b"x" * (MAX_REQUEST + 10))
        except OSError:  # the server may close while we are still sending
            pass
        reply = recv_line(s)
    assert reply == {"ok": False, "error": f"request larger than {MAX_REQUEST} bytes"}
    # One line that is too long, newline included, is refused too.
    with raw(server) as s:
        try:
            s.sendall(b'{"cmd": "echo", "arg": "' + b"y" * (MAX_REQUEST + 10) + b'"}\n')
        except OSError:
            pass
        assert "larger than" in recv_line(s)["error"]
    assert ControlClient().request("echo", 1)["ok"]


def test_a_stalled_client_blocks_nobody(server):
    """Half a request, then silence: others are served meanwhile, and the stalled one
    gets an error when its time is up."""
    stalled = raw(server)
    stalled.sendall(b'{"cmd": "ec')
    t0 = time.monotonic()
    for i in range(5):
        assert ControlClient(timeout=2).request("echo", i)["arg"] == i
    assert time.monotonic() - t0 < 0.4  # not waiting for the stalled client
    reply = recv_line(stalled)
    assert reply["ok"] is False and "incomplete request" in reply["error"]
    assert 0.4 < time.monotonic() - t0 < 3
    stalled.close()
    # A client that connects and says nothing is closed without a word.
    with raw(server) as s:
        assert s.recv(10) == b""


def test_a_drip_feeding_client_is_cut_off(server):
    s = raw(server)
    t0 = time.monotonic()
    reply = None
    try:
        for ch in b'{"cmd": "echo", "arg": "slowly"}':
            s.sendall(bytes([ch]))
            time.sleep(0.1)
    except OSError:
        pass
    reply = recv_line(s)
    s.close()
    assert reply["ok"] is False and "incomplete" in reply["error"]
    assert time.monotonic() - t0 < 4


def test_many_clients_at_once(server):
    results = []

    def ask(i):
        results.append(ControlClient(timeout=5).request("echo", i)["arg"])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(12))


def test_tcp_transport_needs_the_token(monkeypatch):
    monkeypatch.setattr("f2f_cam.control.has_unix_sockets", lambda: False)
    with ControlServer(handler, transport="tcp") as srv:
        info_file = srv.folder / "control.json"
        assert stat.S_IMODE(os.stat(info_file).st_mode) == 0o600
        info = json.loads(info_file.read_text())
        assert ControlClient().request("echo", "tcp")["arg"] == "tcp"
        with socket.create_connection(("127.0.0.1", info["port"]), timeout=5) as s:
            s.sendall(b'{"cmd": "echo", "arg": 1, "token": "guess"}\n')
            assert recv_line(s) == {"ok": False, "error": "bad or missing token"}
    assert not info_file.exists()
    with pytest.raises(NotRunning):
        ControlClient().request("echo")


def test_no_daemon_and_stale_socket(tmp_path):
    with pytest.raises(NotRunning, match="no f2f-cam daemon is running; start one with `f2f-cam run`"):
        ControlClient().request("status")
    # A socket file left by a daemon that crashed: nobody listens.
    folder = paths.runtime_dir()
    folder.mkdir(parents=True, exist_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(folder / "control.sock"))
    s.close()
    with pytest.raises(NotRunning):
        ControlClient().request("status")
    proc = run_cli("ctl", "status")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "f2f-cam: error: no f2f-cam daemon is running; start one with `f2f-cam run`"
