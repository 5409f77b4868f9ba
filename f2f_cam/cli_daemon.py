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
@click.option("--retarget", help="raw | align | transfer  [default: align]")
@click.option("--mirror/--no-mirror", default=None,
              help="Flip the camera like a mirror.  [default: on for a webcam, off for a video file]")
@click.option("--no-tray", is_flag=True, help="No tray icon: run headless (`f2f-cam ctl` controls it).")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True),
              help="Stop after this many seconds (scripts, tests).")
def run(camera, output, backend, device, size, fps, persona, layout, retarget, mirror, no_tray, seconds) -> None:
    """Run Face2Face Cam: your webcam through a persona, as a virtual camera.

    Video apps (Zoom, Teams, OBS, a browser) then pick the camera "Face2Face Cam".
    Switch persona, layout and more from the tray or with `f2f-cam ctl`; one daemon
    runs per user.
    """
    from f2f_cam import paths
    from f2f_cam.config import DaemonConfig, PipelineConfig, load_config, merge
    from f2f_cam.daemon import serve

    config_file = paths.config_file()
    pipe_cfg = merge(load_config(config_file, "pipeline", PipelineConfig),
                     persona=persona, layout=layout, retarget=retarget)
    cfg = merge(load_config(config_file, "daemon", DaemonConfig), camera=camera, output=output,
                backend=backend, device=device, size=size, fps=fps, mirror=mirror,
                tray=False if no_tray else None)
    s = serve(cfg, pipe_cfg, seconds=seconds)
    out = s["output"] or {}
    latency = f"{s['latency_ms']:.0f} ms" if s["latency_ms"] is not None else "-"
    click.echo(f"f2f-cam: stopped after {s['seconds']:.1f} s: {s['frames_out']} frames to "
               f"{out.get('kind', '?')} {out.get('device', '')} ({s['fps']:.1f} fps), "
               f"{s['frames_processed']} processed ({s['processed_fps']:.1f} fps), "
               f"{s['dropped']} dropped, latency {latency}")


# -- ctl ------------------------------------------------------------------------------

def _request(cmd: str, arg=None) -> dict:
    from f2f_cam.control import ControlClient

    return ControlClient().request(cmd, arg)


def _echo_change(reply: dict, what: str) -> None:
    value = reply.get("status", {}).get(what)
    if isinstance(value, bool):
        value = "on" if value else "off"
    click.echo(reply.get("message") or f"{what}: {value}")


@click.group()
def ctl() -> None:
    """Control the running daemon (`f2f-cam run`)."""


@ctl.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ctl_status(as_json: bool) -> None:
    """What the daemon is doing: persona, layout, fps, latency, camera, output."""
    st = _request("status")["status"]
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
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
    click.echo(f"f2f-cam daemon, pid {st['pid']}, up {st['uptime_s']:.0f} s: {state}, {face}")
    click.echo(f"  persona:  {persona}")
    click.echo(f"  layout:   {st['layout']}; retarget {st['retarget']}"
               f"{' (calibrated)' if st['calibrated'] else ''}; mirror {onoff(st['mirror'])}; "
               f"preview {onoff(st['preview'])}")
    click.echo(f"  camera:   {camera}; {st['camera_source']}, {cam_size}")
    click.echo(f"  output:   {out.get('kind')} {out.get('backend')} {out.get('device')}, {size} at {out.get('fps'):g} fps")
    click.echo(f"  rate:     {st['fps']:.1f} fps out, {st['processed_fps']:.1f} fps processed, "
               f"latency {latency}, {st['dropped']} dropped, {st['frames_out']} frames out")
    click.echo(f"  stages:   {stages}")
    if st.get("error"):
        click.echo(f"  error:    {st['error']}")


@ctl.command("persona")
@click.argument("name")
def ctl_persona(name: str) -> None:
    """Switch to persona NAME (see `f2f-cam personas list`)."""
    _echo_change(_request("persona", name), "persona")


@ctl.command("layout")
@click.argument("name")
def ctl_layout(name: str) -> None:
    """Switch layout: persona | side-by-side | landmarks | camera."""
    _echo_change(_request("layout", name), "layout")


@ctl.command("retarget")
@click.argument("mode")
def ctl_retarget(mode: str) -> None:
    """Switch retargeting: raw | align | transfer."""
    _echo_change(_request("retarget", mode), "retarget")


@ctl.command("mirror")
@click.argument("state", type=ON_OFF)
def ctl_mirror(state: str) -> None:
    """Mirror the camera on or off."""
    _echo_change(_request("mirror", state.lower()), "mirror")


@ctl.command("preview")
@click.argument("state", type=ON_OFF)
def ctl_preview(state: str) -> None:
    """Show or hide the preview window."""
    _echo_change(_request("preview", state.lower()), "preview")


@ctl.command("landmarks")
@click.argument("state", type=ON_OFF)
def ctl_landmarks(state: str) -> None:
    """Show the landmark sketch (on), or go back to the layout before (off)."""
    _echo_change(_request("landmarks", state.lower()), "layout")


@ctl.command("passthrough")
@click.argument("state", type=ON_OFF)
def ctl_passthrough(state: str) -> None:
    """Pass the camera through unchanged (on), or go back to the layout before (off)."""
    _echo_change(_request("passthrough", state.lower()), "layout")


@ctl.command("pause")
def ctl_pause() -> None:
    """Freeze the output on the last frame."""
    _request("pause")
    click.echo("paused")


@ctl.command("resume")
def ctl_resume() -> None:
    """Resume after pause."""
    _request("resume")
    click.echo("resumed")


@ctl.command("calibrate")
def ctl_calibrate() -> None:
    """Take your face now as your neutral face (look at the camera, relaxed)."""
    _echo_change(_request("calibrate"), "retarget")


@ctl.command("quit")
def ctl_quit() -> None:
    """Stop the daemon (the virtual camera goes away)."""
    _request("quit")
    click.echo("f2f-cam daemon is quitting")


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
