"""Registries: explicit tables of the names a user may type, each entry a typed record.

``LAYOUTS["persona"]`` is a ``Layout``; an unknown name fails with the list of choices
(``unknown layout 'foo'; choose one of: persona, side-by-side, landmarks, camera``),
the same line from the command line, ``config.toml``, the tray and ``ctl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Iterator, TypeVar

from f2f_cam.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """An ordered, read-only name -> entry table with a precise error for a bad name."""

    def __init__(self, what: str, entries: dict[str, T]):
        self.what = what  # "layout", "precision": used in the error message
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable value from a TOML file
            raise UserError(f"unknown {self.what} {name!r}; choose one of: {', '.join(self._entries)}") from None

    def check(self, name: str) -> str:
        """``name`` if it is registered, else the ``UserError``."""
        self[name]
        return name

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def items(self):
        return self._entries.items()

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)


@dataclass(frozen=True)
class Layout:
    """What an output layout shows, and so which stages it needs."""

    name: str
    label: str  # the tray's menu label
    help: str
    camera: bool = False  # shows the camera image
    sketch: bool = False  # shows the landmark sketch (needs landmarks)
    face: bool = False  # shows the generated face (needs landmarks and a generator)

    @property
    def tracks_face(self) -> bool:
        """Whether the layout needs the landmark detector (and so can have "no face")."""
        return self.sketch or self.face

    @property
    def needs_generator(self) -> bool:
        return self.face


LAYOUTS: Registry[Layout] = Registry("layout", {l.name: l for l in (
    Layout("persona", "Persona", "the generated face, fitted into the frame without distortion", face=True),
    Layout("side-by-side", "Side by side", "camera | sketch | generated, like the original demo",
           camera=True, sketch=True, face=True),
    Layout("landmarks", "Landmarks", "the landmark sketch (the old --show 1)", sketch=True),
    Layout("camera", "Camera (passthrough)", "the camera, passed through", camera=True),
)})

RETARGET_MODES: Registry[str] = Registry("retarget mode", {
    "expression": "the persona's own face, moved by your expression and head pose (its expression "
                  "model; transfer for a persona without one)",
    "raw": "landmarks drawn where the camera saw them (through the persona's training crop)",
    "align": "a similarity transform of your stable points onto the persona's canonical landmarks",
    "transfer": "persona neutral + (you now - your neutral): the persona keeps its face shape",
})

# Generator precision at run time. "auto": bf16 autocast where the hardware has native
# bf16 (about 2x on such CPUs, within ~1/255 of fp32), else fp32.
PRECISIONS: Registry[str] = Registry("precision", {
    "auto": "bf16 where the hardware has it natively, else fp32",
    "fp32": "the exported weights as they are",
    "bf16": "bf16 autocast",
})

# Which of a persona's generators runs (a persona with a real-time student, format 3).
STUDENT_MODES: Registry[str] = Registry("student", {
    "auto": "the persona's real-time student where its full generator is too slow for 30 fps here",
    "always": "the real-time student whenever the persona has one",
    "never": "always the full generator",
})

# Training precision: the runtime's, plus fp16 (mixed precision with a grad scaler,
# for GPUs without bf16).
TRAIN_PRECISIONS: Registry[str] = Registry("precision", {
    **dict(PRECISIONS.items()),
    "fp16": "fp16 autocast with a grad scaler (CUDA)",
})

# Where torch runs. "auto" (training) picks cuda, then mps, then cpu.
DEVICES: Registry[str] = Registry("device", {
    "auto": "a GPU if torch sees one (cuda, then mps), else the CPU",
    "cpu": "the CPU",
    "cuda": "an NVIDIA GPU (needs torch's CUDA build)",
    "mps": "Apple's GPU",
})


def check_device(device: str, *, allow_auto: bool = True) -> str:
    """A torch device name: one of DEVICES, or ``cuda:N``."""
    if isinstance(device, str) and device.startswith("cuda:") and device[5:].isdigit():
        return device
    if not allow_auto and device == "auto":
        raise UserError(f"unknown device 'auto'; choose one of: {', '.join(d for d in DEVICES if d != 'auto')}")
    return DEVICES.check(device)
