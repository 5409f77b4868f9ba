"""Give an existing persona folder a real-time student (how the bundled astronaut got hers).

    python scripts/add_student.py PERSONA_DIR VIDEO [--minutes 8] [--ngf N] [--factor F] [--work DIR]

``f2f-cam train`` distils a student at the end of training when the generator is too
slow for 30 fps on the CPU it trained on (``trainers.distill``). A persona made before
that, or on a faster machine, has none: this builds a dataset from the persona's
training VIDEO at the persona's size (in ``--work``), distils the persona's own frozen
generator into a student for ``--minutes`` exactly as ``train`` does, and rewrites the
folder with ``student.pt`` and the student's facts in ``persona.json`` (format 3),
checked before it replaces anything. The generator and the rest are left as they are.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from f2f_cam import persona as pf  # noqa: E402
from f2f_cam.errors import UserError  # noqa: E402
from trainers.dataset import build_dataset, load_dataset  # noqa: E402
from trainers.distill import distil, generator_ms  # noqa: E402
from trainers.export import _script_bytes, freeze_generator  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("persona", type=Path, help="the persona folder (rewritten in place)")
    ap.add_argument("video", type=Path, help="the video the persona was trained on")
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--ngf", type=int, default=None, help="the student's width (default: train's)")
    ap.add_argument("--factor", type=int, default=None, help="its fold (default: train's; 1: none)")
    ap.add_argument("--work", type=Path, default=None, help="where the dataset goes (default: a temporary folder)")
    args = ap.parse_args()

    folder = args.persona.resolve()
    persona = pf.read_persona(folder)
    files = pf.read_files(folder)
    meta = pf.parse_meta(files[pf.PERSONA_JSON], str(folder))
    size, dtype = persona.image_size, meta["generator"].get("dtype", "float32")
    teacher = torch.jit.load(str(folder / pf.GENERATOR_FILE), map_location="cpu").eval()

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp) / "dataset"
        if not (work / "dataset.json").is_file():
            build_dataset(args.video, work, frames=400, size=size)
        data = load_dataset(work)
        crop, want = data.get("crop", {}), meta.get("crop", {})
        drift = max((abs(float(crop[k]) - float(want[k])) for k in ("x", "y", "size") if k in crop and k in want),
                    default=None)
        print(f"dataset crop {crop} against the persona's {want} (largest difference {drift} px)")
        arch = {k: v for k, v in (("ngf", args.ngf), ("factor", args.factor)) if v is not None}
        student, facts = distil(teacher, data, minutes=args.minutes, arch=arch)
    facts.update(generator_ms=round(generator_ms(teacher, size), 1), student_ms=round(generator_ms(student, size), 1))
    print("student:", facts)

    pf.set_student(meta, {"architecture": type(student).__name__, **facts})
    files[pf.STUDENT_FILE] = _script_bytes(freeze_generator(student, size, dtype))
    files[pf.PERSONA_JSON] = pf.dump_meta(meta)
    pf.check_files(files, folder, f"persona at {folder}", meta)  # what we write must load
    pf.write_folder(files, folder, replace=True)
    print(f"{folder}: student added ({facts['student_ms']} ms a frame against the generator's {facts['generator_ms']})")


if __name__ == "__main__":
    try:
        main()
    except UserError as e:  # a missing or corrupt persona, a video without a face: one line
        sys.exit(f"add_student: {e}")
