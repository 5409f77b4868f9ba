"""The ``f2f-cam`` command line. Thin: it parses options, calls the library, prints.

User errors (``UserError``, bad options) print one line and exit 1 (2 for usage);
anything else is a bug: one line, and the traceback with ``--verbose``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
import traceback
from pathlib import Path

import click

from f2f_cam import __version__
from f2f_cam.errors import UserError

log = logging.getLogger("f2f_cam")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging and full tracebacks.")
@click.version_option(__version__, prog_name="f2f-cam")
def cli(verbose: bool) -> None:
    """f2f-cam: appear on any video call as a trained persona."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


# -- video ------------------------------------------------------------------------

@cli.command()
@click.argument("input", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Output video (.mp4, .mkv, .mov, .webm, .avi).")
@click.option("--persona", help="Persona name (default: your first persona, else a bundled one).")
@click.option("--layout", default=None,
              help="persona | side-by-side | landmarks | camera  [default: persona]")
@click.option("--retarget", default=None, help="expression | raw | align | transfer  [default: expression]")
@click.option("--size", "size", default=None, help="Output WIDTHxHEIGHT (default: the input's; "
              "side-by-side: three panels at the input's height).")
@click.option("--no-smoothing", is_flag=True, help="Draw the raw landmarks, unfiltered.")
@click.option("--device", default=None, help="Where the generator runs: cpu | cuda | mps.")
@click.option("--student", default="never", show_default=True,
              help="A persona's real-time student: never (offline, the full generator is worth its time) "
                   "| always | auto.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def video(input: Path, output: Path, persona, layout, retarget, size, no_smoothing, device, student, quiet) -> None:
    """Convert a video file through a persona (audio kept).

    The output has the input's frame rate, each frame at its input frame's time. Frames
    without a face show the last generated frame (before the first face: the persona at
    rest). A video cut short converts as far as it decodes, with a warning.
    """
    from f2f_cam import paths
    from f2f_cam.config import load_config, merge, parse_size

    # Every setting is checked here, before the input is opened or anything written.
    cfg = merge(load_config(paths.config_file()), persona=persona, layout=layout, retarget=retarget,
                device=device, smoothing=False if no_smoothing else None, student=student)
    out_size = parse_size(size) if size else None

    from f2f_cam.video import convert_video

    summary = convert_video(input, output, cfg, size=out_size, progress=not quiet)
    click.echo(f"wrote {summary['output']}: {summary['frames']} frames, face in "
               f"{summary['frames_with_face']}, layout {summary['layout']}, "
               f"persona {summary['persona'] or '-'}, {summary['seconds']:.1f} s")


# -- demo -------------------------------------------------------------------------

@cli.command()
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("f2f-cam-demo.mp4"),
              show_default=True, help="Where to write the side-by-side video.")
@click.option("--persona", default=None, help="Persona to drive [default: the bundled 'astronaut'].")
@click.option("--picture", type=click.Path(path_type=Path), default=None,
              help="Also write a PNG strip of three moments (driver | sketch | persona).")
@click.option("--no-preview", is_flag=True, help="Do not open a preview window.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def demo(output: Path, persona, picture, no_preview, quiet) -> None:
    """Try f2f-cam without a webcam: a bundled clip drives the bundled persona."""
    from f2f_cam.demo import play, run_demo
    from f2f_cam.system import has_display

    summary = run_demo(output, persona=persona, picture=picture, progress=not quiet)
    click.echo(f"wrote {output.resolve()}: driver | sketch | persona '{summary['persona']}', "
               f"{summary['frames']} frames (face in {summary['frames_with_face']})")
    if picture is not None:
        click.echo(f"wrote {picture.resolve()}")
    if not no_preview and has_display():
        play(output)


# -- personas ---------------------------------------------------------------------

@cli.group()
def personas() -> None:
    """List, inspect, import, export and remove personas."""


def _persona_row(p) -> dict:
    from f2f_cam.persona import Persona

    if not isinstance(p, Persona):
        name, path, problem = p
        return {"name": name, "path": str(path), "ok": False, "problem": problem}
    t = p.training
    return {
        "name": p.name, "display_name": p.display_name, "ok": True,
        "source": "bundled" if p.bundled else "user", "image_size": p.image_size,
        "sketch_version": p.sketch_version, "dtype": p.dtype, "path": str(p.path),
        "training": {k: t[k] for k in ("frames", "epochs", "minutes", "device", "val_l1", "val_psnr",
                                       "val_ssim") if k in t},
        # The real-time student's facts (format 3), or None.
        "student": {k: v for k, v in p.meta["student"].items() if k != "file"} if p.student_path else None,
    }


@personas.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def personas_list(as_json: bool) -> None:
    """Your personas and the bundled ones."""
    from f2f_cam.persona import PersonaStore

    store = PersonaStore()
    rows = [_persona_row(p) for p in store.list()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no personas yet (store: {store.root}); make one with `f2f-cam train VIDEO --name NAME`")
        return
    click.echo(f"{'NAME':<20} {'SOURCE':<8} {'SIZE':>5}  DETAILS")
    for r in rows:
        if not r["ok"]:
            click.echo(f"{r['name']:<20} {'?':<8} {'':>5}  BROKEN: {r['problem']}")
            continue
        t = r["training"]
        facts = ", ".join(f"{k}={t[k]}" for k in ("frames", "epochs", "val_psnr") if k in t)
        click.echo(f"{r['name']:<20} {r['source']:<8} {r['image_size']:>5}  {r['display_name']}"
                   + (f" ({facts})" if facts else "") + (", real-time student" if r["student"] else ""))


@personas.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="The whole persona.json.")
def personas_show(name: str, as_json: bool) -> None:
    """Details of one persona."""
    from f2f_cam.persona import PersonaStore

    p = PersonaStore().get(name)
    if as_json:
        meta = {k: v for k, v in p.meta.items() if not k.endswith("_landmarks")}
        click.echo(json.dumps({**meta, "path": str(p.path), "bundled": p.bundled}, indent=2))
        return
    row = _persona_row(p)
    click.echo(f"{p.display_name} ({p.name}), {'bundled' if p.bundled else 'user'} persona")
    click.echo(f"  folder:     {p.path}")
    click.echo(f"  image:      {p.image_size}x{p.image_size}, sketch v{p.sketch_version}, generator {p.dtype}")
    for k, v in row["training"].items():
        click.echo(f"  {k + ':':<11} {v}")
    s = row["student"]
    if s is not None:
        click.echo(f"  student:    real-time student, {s.get('student_ms', '?')} ms a frame against the generator's "
                   f"{s.get('generator_ms', '?')} ms where it trained; {s.get('psnr_vs_generator', '?')} dB from "
                   "the generator's output")
    click.echo(f"  thumbnail:  {p.thumbnail_path}")


@personas.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace a persona of the same name.")
@click.option("--name", default=None, help="Install it under this name instead of its own.")
def personas_import(file: Path, force: bool, name: str | None) -> None:
    """Install a persona from a .f2f file."""
    from f2f_cam.persona import PersonaStore

    p = PersonaStore().import_archive(file, force=force, name=name)
    click.echo(f"installed persona '{p.name}' at {p.path}")


@personas.command("export")
@click.argument("name")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="NAME.f2f file to write.")
def personas_export(name: str, output: Path) -> None:
    """Write a persona to a .f2f file to share."""
    from f2f_cam.persona import PersonaStore

    out = PersonaStore().export_archive(name, output)
    click.echo(f"wrote {out}")


@personas.command("fit-expression")
@click.argument("name")
@click.argument("video", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write NAME.f2f here instead of installing it.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def personas_fit_expression(name: str, video: Path, output: Path | None, quiet: bool) -> None:
    """Give a persona made before expression retargeting (format 1) its expression
    model, from the video it was trained on."""
    from f2f_cam.persona import PersonaStore, write_archive
    from trainers.export import add_expression

    store = PersonaStore()
    persona = store.get(name)
    if persona.expression is not None:
        raise UserError(f"persona '{name}' already has an expression model")
    files = add_expression(persona, video, progress=not quiet)
    facts = json.loads(files["persona.json"])["expression"]
    fit = f"{facts['heldout_median_px']:.1f} px median error on held-out frames"
    if output is not None:
        click.echo(f"wrote {write_archive(files, output)} ({fit}); install it with `f2f-cam personas import {output}`")
        return
    # Bundled personas are read-only: the fitted one goes into the user's store and hides it.
    p = store.install(files, force=not persona.bundled, where=f"persona '{name}'")
    click.echo(f"persona '{name}' now has an expression model ({fit}); installed at {p.path}")


@personas.command("remove")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def personas_remove(name: str, yes: bool) -> None:
    """Delete one of your personas."""
    from f2f_cam.persona import PersonaStore

    store = PersonaStore()
    store.get(name)  # unknown names fail before we ask
    if not yes:
        if not sys.stdin.isatty():
            raise UserError(f"add --yes to remove persona '{name}' without a prompt")
        click.confirm(f"Remove persona '{name}'?", abort=True)
    folder = store.remove(name)
    click.echo(f"removed persona '{name}' ({folder})")


# -- commands defined in their own modules ----------------------------------------

def _register_optional() -> None:
    """Commands whose modules import only click at module level (instant --help)."""
    import importlib

    for module, names in (("f2f_cam.cli_daemon", ("run", "ctl", "doctor")),
                          ("f2f_cam.cli_train", ("dataset", "train", "export")),
                          ("f2f_cam.cli_bench", ("bench",)),
                          ("f2f_cam.cli_runs", ("runs",))):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        for name in names:
            if hasattr(mod, name):
                cli.add_command(getattr(mod, name))


_register_optional()


# -- entry point ------------------------------------------------------------------

@contextlib.contextmanager
def sigterm_interrupts():
    """SIGTERM (``kill``, a service manager, a logout) interrupts like Ctrl-C: the
    temporary files of a half-done write are removed on the way out, and ``train``
    saves a checkpoint (``run`` and ``train`` install handlers of their own)."""
    def interrupt(*_):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (tests call main() from others)
        return
    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: turns errors into one line and an exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    verbose = any(a in ("-v", "--verbose") for a in args)
    try:
        with sigterm_interrupts():
            result = cli.main(args=args, prog_name="f2f-cam", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except UserError as e:
        if verbose:
            traceback.print_exc()
        click.echo(f"f2f-cam: error: {e}", err=True)
        return e.exit_code
    except click.UsageError as e:
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx else ""
        click.echo(f"f2f-cam: error: {e.format_message()}{hint}", err=True)
        return 2
    except click.ClickException as e:
        click.echo(f"f2f-cam: error: {e.format_message()}", err=True)
        return e.exit_code
    except (KeyboardInterrupt, click.Abort):
        click.echo("f2f-cam: interrupted", err=True)
        return 130
    except Exception as e:  # a bug: say so in one line unless asked for details
        if verbose:
            traceback.print_exc()
        click.echo(f"f2f-cam: internal error: {type(e).__name__}: {e} "
                   "(run with --verbose for the traceback, and please report it)", err=True)
        return 1
