"""The command table drives the daemon's dispatch, `f2f-cam ctl` and the tray; the one
flow runs every command's frames."""

import numpy as np
import pytest

from f2f_cam import flow
from f2f_cam.cli_daemon import ctl
from f2f_cam.commands import COMMANDS, dispatch, on_off
from f2f_cam.errors import UserError
from f2f_cam.registry import LAYOUTS


class FakeStatus:
    def as_dict(self):
        return {"layout": "camera", "mirror": True}


class Calls:
    """Stands in for a Daemon: records which method each command called, with what."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kw: self.calls.append((name, args)) or "transfer"

    def status(self):
        return FakeStatus()


def test_ctl_has_one_subcommand_per_command():
    assert sorted(ctl.commands) == sorted(COMMANDS)
    for name, command in COMMANDS.items():
        params = [p.name for p in ctl.commands[name].params if p.param_type_name == "argument"]
        assert params == ([] if command.arg is None else ["arg"]), name


@pytest.mark.parametrize("cmd,arg,call", [
    ("persona", "tiny", ("set_persona", ("tiny",))),
    ("layout", "camera", ("set_layout", ("camera",))),
    ("mirror", "off", ("set_mirror", (False,))),
    ("preview", "yes", ("set_preview", (True,))),
    ("landmarks", "on", ("show_landmarks", (True,))),
    ("passthrough", True, ("set_passthrough", (True,))),
    ("pause", None, ("set_paused", (True,))),
    ("resume", None, ("set_paused", (False,))),
    ("calibrate", None, ("calibrate", ())),
    ("quit", None, ("quit", ())),
])
def test_dispatch_calls_the_daemon_method(cmd, arg, call):
    d = Calls()
    reply = dispatch(d, cmd, arg)
    assert d.calls == [call]
    assert reply["status"] == {"layout": "camera", "mirror": True}


def test_bad_requests_are_one_line_user_errors():
    with pytest.raises(UserError, match="unknown command 'fly'; choose one of: status, persona, layout"):
        dispatch(Calls(), "fly")
    with pytest.raises(UserError, match="'persona' needs a persona name"):
        dispatch(Calls(), "persona", "")
    with pytest.raises(UserError, match="mirror takes on or off, not 'sideways'"):
        dispatch(Calls(), "mirror", "sideways")
    with pytest.raises(UserError, match="unknown command"):
        dispatch(Calls(), ["not", "hashable"])
    assert on_off("ON", "x") is True and on_off(0, "x") is False


def test_every_layout_says_what_it_needs():
    assert LAYOUTS["persona"].needs_generator and not LAYOUTS["landmarks"].needs_generator
    assert [n for n, spec in LAYOUTS.items() if spec.tracks_face] == ["persona", "side-by-side", "landmarks"]
    with pytest.raises(UserError, match="unknown layout 'grid'; choose one of: persona, side-by-side"):
        LAYOUTS["grid"]


class ListSink:
    def __init__(self, close_after=None):
        self.frames, self.close_after = [], close_after

    def write(self, frame, t=None):
        self.frames.append((t, frame))

    @property
    def closed(self):
        return self.close_after is not None and len(self.frames) >= self.close_after


def test_flow_runs_frames_through_the_pipeline_into_the_sink():
    frames = [(i / 10, np.full((2, 2, 3), i, np.uint8)) for i in range(5)]
    sink, seen = ListSink(), []
    n = flow.run(frames, lambda f, t: f + 1, sink, on_frame=seen.append)
    assert n == 5 and seen == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert [int(f[0, 0, 0]) for _, f in sink.frames] == [1, 2, 3, 4, 5]
    # No pipeline: the frames as they are (playing a video); a closed window ends the run.
    sink = ListSink(close_after=2)
    assert flow.run(frames, None, sink) == 2


def test_flow_errors_propagate_unless_handled():
    def broken(frame, t):
        if t == 0.1:
            raise RuntimeError("bad frame")
        return frame

    frames = [(0.0, 0), (0.1, 1), (0.2, 2)]
    with pytest.raises(RuntimeError):
        flow.run(frames, broken, ListSink())
    errors, sink = [], ListSink()
    assert flow.run(frames, broken, sink, on_error=errors.append) == 2
    assert [f for _, f in sink.frames] == [0, 2] and str(errors[0]) == "bad frame"
