from f2f_cam.cli import main

raise SystemExit(main())
