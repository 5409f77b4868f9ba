"""Regenerate the sketch golden image (run by hand, never by the tests).

    python tests/make_golden.py            # rewrite the PNG from the stored landmarks
    python tests/make_golden.py --detect   # also re-measure the landmarks (MediaPipe)

Only do this together with a SKETCH_VERSION bump: the golden image pins what the
persona generators were trained on.
"""

import json
import sys
from pathlib import Path

import cv2
import numpy as np

from f2f_cam import sketch

DATA = Path(__file__).resolve().parent / "data"
POINTS = DATA / "astronaut_landmarks_256.json"


def golden_path(size: int) -> Path:
    return DATA / f"sketch_v{sketch.SKETCH_VERSION}_{size}.png"


def main() -> None:
    if "--detect" in sys.argv:
        from skimage import data

        from f2f_cam.geometry import square_around
        from f2f_cam.landmarks import LandmarkDetector

        with LandmarkDetector(mode="image") as det:
            face = det(data.astronaut())
        crop = square_around(face.xy, 512, 512, margin=0.4)
        pts = crop.to_image(face.xy, 256)
        POINTS.write_text(json.dumps({"source": "skimage.data.astronaut(), MediaPipe face_landmarker "
                                                "float16 v1, square crop margin 0.4, 256 px",
                                      "points": np.round(pts, 2).tolist()}))
    pts = np.array(json.loads(POINTS.read_text())["points"], np.float32)
    for size in (256, 128):
        img = sketch.render(pts * (size / 256), size)
        cv2.imwrite(str(golden_path(size)), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        print("wrote", golden_path(size))


if __name__ == "__main__":
    main()
