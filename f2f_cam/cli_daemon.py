"""``f2f-cam run``, ``f2f-cam ctl ...`` and ``f2f-cam doctor``.

Only click and the standard library at module level: ``f2f-cam --help`` stays
instant. Everything heavy is imported inside the commands.
"""

from __future__ import annotations

import json

import click

ON_OFF = click.Choice(["on", "off"], case_sensitive=False)


# -- run ------------------------------------------------------------------------------

@click.command()
@click.option("--camera", help="Webcam index, /dev/videoN, or a video file (looped, in real time).  [default: 0]")
@click.option("--output", help="virtualcam | window | FILE.mp4 (.mkv, .webm, ...)  [default: virtualcam]")
@click.option("--backend", help="Virtual camera backend: auto | v4l2loopback | obs | unitycapture  [default: auto]")
@click.option("--device", help='Virtual camera device (default: the one labelled "Face2Face Cam", '
              "else the backend's first).")
@click.option("--size", help="Output WIDTHxHEIGHT.  [default: 1280x720]")
@click.option("--fps", type=float, help="Output frame rate.  [default: 30]")
@click.option("--persona", help="Persona name (default: your first persona, else a bundled one).")
@click.option("--layout", help="persona | side-by-side | landmarks | camera  [default: persona]")
@click.option("--retarget", help="expression | raw | align | transfer  [default: expression]")
@click.option("--mirror/--no-mirror", default=None,
              help="Flip the camera like a mirror.  [default: on for a webcam, off for a video file]")
@click.option("--student", help="A persona's real-time student: auto (where its generator is too slow "
                                "for 30 fps here) | always | never  [default: auto]")
@click.option("--no-tray", is_flag=True, help="No tray icon: run headless (`f2f-cam ctl` controls it).")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True),
              help="Stop after this many seconds (scripts, tests).")
def run(camera, output, backend, device, size, fps, persona, layout, retarget, mirror, student, no_tray,
        seconds) -> None:
    """Run Face2Face Cam: your webcam through a persona, as a virtual camera.

    Video apps (Zoom, Teams, OBS, a browser) then pick the camera "Face2Face Cam".
    Switch persona, layout and more from the tray or with `f2f-cam ctl`; one daemon
    runs per user.
    """
    from f2f_cam import paths
    from f2f_cam.config import DaemonConfig, PipelineConfig, load_config, merge
    from f2f_cam.app import serve

    config_file = paths.config_file()
    pipe_cfg = merge(load_config(config_file, "pipeline", PipelineConfig),
                     persona=persona, layout=layout, retarget=retarget, student=student)
    cfg = merge(load_config(config_file, "daemon", DaemonConfig), camera=camera, output=output,
                backend=backend, device=device, size=size, fps=fps, mirror=mirror,
                tray=False if no_tray else None)
    hint = first_run_hint(pipe_cfg)
    if hint:
        click.echo(f"f2f-cam: {hint}", err=True)
    s = serve(cfg, pipe_cfg, seconds=seconds)
    out = s["output"] or {}
    latency = f"{s['latency_ms']:.0f} ms" if s["latency_ms"] is not None else "-"
    click.echo(f"f2f-cam: stopped after {s['seconds']:.1f} s: {s['frames_out']} frames to "
               f"{out.get('kind', '?')} {out.get('device', '')} ({s['fps']:.1f} fps), "
               f"{s['frames_processed']} processed ({s['processed_fps']:.1f} fps), "
               f"{s['dropped']} dropped, latency {latency}")


def first_run_hint(pipe_cfg) -> str | None:
    """What to do next when the persona shown is the bundled demo: the user has none of
    their own yet. None when they have one, named one, or show no persona at all."""
    from f2f_cam.persona import PersonaStore

    if pipe_cfg.layout not in ("persona", "side-by-side") or pipe_cfg.persona:
        return None
    store = PersonaStore()
    if store.own_names() or not store.names():  # none at all: the daemon's error says what to do
        return None
    return (f"no persona of your own yet (showing the demo: {', '.join(store.names())}); make one from a 1-3 minute video of a face: "
            "`f2f-cam train VIDEO --name NAME`, or import one: `f2f-cam personas import FILE.f2f`")


# -- ctl: one subcommand per entry of f2f_cam.commands.COMMANDS ------------------------

def _request(cmd: str, arg=None) -> dict:
    from f2f_cam.control import ControlClient

    return ControlClient().request(cmd, arg)


@click.group()
def ctl() -> None:
    """Control the running daemon (`f2f-cam run`)."""


@ctl.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ctl_status(as_json: bool) -> None:
    """What the daemon is doing: persona, layout, fps, latency, camera, output."""
    st = _request("status")["status"]
    click.echo(json.dumps(st, indent=2) if as_json else format_status(st))


def format_status(st: dict) -> str:
    onoff = lambda v: "on" if v else "off"  # noqa: E731
    state = "paused" if st["paused"] else "running"
    face = {True: "face found", False: "no face", None: "no face tracking in this layout"}[st["face"]]
    persona = f"{st['persona']} ({st['persona_display_name']})" if st["persona"] else "-"
    out = st["output"] or {}
    size = "x".join(map(str, out.get("size", []))) or "?"
    cam_size = "x".join(map(str, st["camera_size"] or [])) or "?"
    camera = st["camera"] + (f" ({st['camera_problem']})" if st["camera_problem"] else "")
    latency = f"{st['latency_ms']:.0f} ms" if st["latency_ms"] is not None else "-"
    stages = ", ".join(f"{k} {v:.1f} ms" for k, v in st["stage_ms"].items()) or "-"
    lines = [
        f"f2f-cam daemon, pid {st['pid']}, up {st['uptime_s']:.0f} s: {state}, {face}",
        f"  persona:  {persona}",
        f"  layout:   {st['layout']}; retarget {st['retarget']}{' (calibrated)' if st['calibrated'] else ''}; "
        f"mirror {onoff(st['mirror'])}; preview {onoff(st['preview'])}",
        f"  camera:   {camera}; {st['camera_source']}, {cam_size}",
        f"  output:   {out.get('kind')} {out.get('backend')} {out.get('device')}, {size} at {out.get('fps') or 0:g} fps"
        + (f" ({st['output_problem']})" if st.get("output_problem") else ""),
        f"  rate:     {st['fps']:.1f} fps out, {st['processed_fps']:.1f} fps processed, "
        f"latency {latency}, {st['dropped']} dropped, {st['frames_out']} frames out",
        f"  stages:   {stages}",
    ]
    if st.get("error"):
        lines.append(f"  error:    {st['error']}")
    return "\n".join(lines)


def _add_ctl_command(command) -> None:
    """``f2f-cam ctl NAME [ARG]`` for one entry of the command table."""
    def send(arg=None) -> None:
        from f2f_cam.commands import reply_text

        reply = _request(command.name, arg.lower() if command.arg == "on/off" else arg)
        click.echo(reply_text(command.name, reply))

    params = []
    if command.arg == "on/off":
        params = [click.Argument(["arg"], type=ON_OFF, metavar="on|off")]
    elif command.arg is not None:
        params = [click.Argument(["arg"], metavar=command.metavar)]
    ctl.add_command(click.Command(command.name, callback=send, params=params, help=command.help))


def _add_ctl_commands() -> None:
    from f2f_cam.commands import COMMANDS

    for name, command in COMMANDS.items():
        if name != "status":  # status has its own output formats, above
            _add_ctl_command(command)


_add_ctl_commands()


# -- doctor ---------------------------------------------------------------------------

@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check cameras, virtual camera, landmark model, personas, torch and tray.

    Each problem comes with its fix. Exits 0 when the essentials work (the landmark
    model, and a persona or a note on how to get one), 1 otherwise.
    """
    from f2f_cam.doctor import format_report, run_checks

    report = run_checks()
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(format_report(report))
    ctx.exit(0 if report["ok"] else 1)
