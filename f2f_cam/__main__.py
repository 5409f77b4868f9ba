"""`python -m f2f_cam ...`: the same as the `f2f-cam` command (torchrun uses it)."""

from f2f_cam.cli import main

raise SystemExit(main())
