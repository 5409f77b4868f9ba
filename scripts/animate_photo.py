"""Animate a still portrait into a short video with head motion (pan, zoom, tilt).

    python scripts/animate_photo.py PHOTO OUT.mp4 [--seconds 20] [--fps 25] [--size 640x480]
    python scripts/animate_photo.py --hopper OUT.mp4     # matplotlib's public-domain Grace Hopper photo

Used to check f2f-cam on a face that no test generates; any portrait works. The
motion is smooth and periodic: rotation +/- 8 deg, zoom 0.85-1.15, pan +/- 10 % width.
"""

import argparse
import math
import sys

import av
import cv2
import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photo", nargs="?", help="portrait image (face roughly centred, upper third)")
    ap.add_argument("out", help="the .mp4 to write")
    ap.add_argument("--hopper", action="store_true", help="use matplotlib's grace_hopper.jpg")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--size", default="640x480")
    args = ap.parse_args(argv)
    if args.hopper:
        import matplotlib.cbook as cbook

        args.photo = str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    if not args.photo:
        ap.error("give PHOTO or --hopper")
    bgr = cv2.imread(args.photo)
    if bgr is None:
        print(f"cannot read {args.photo}", file=sys.stderr)
        return 1
    img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    W, H = (int(v) for v in args.size.split("x"))
    h, w = img.shape[:2]
    centre = (w / 2, h / 2.6)  # faces sit in the upper part of a portrait
    with av.open(args.out, "w") as out:
        stream = out.add_stream("libx264", rate=args.fps, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(int(args.seconds * args.fps)):
            t = i / args.fps
            angle = 8 * math.sin(2 * math.pi * 0.13 * t)
            zoom = 1 + 0.15 * math.sin(2 * math.pi * 0.07 * t + 1)
            dx = 0.1 * W * math.sin(2 * math.pi * 0.11 * t)
            dy = 0.05 * H * math.sin(2 * math.pi * 0.17 * t + 2)
            m = cv2.getRotationMatrix2D(centre, angle, zoom * 1.4 * H / h)
            m[:, 2] += (W / 2 - centre[0] + dx, H / 2 - centre[1] + dy)
            frame = cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
