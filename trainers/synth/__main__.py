"""``python -m trainers.synth OUT.mp4 ...``: write a synthetic talking-head clip."""

from trainers.synth.clip import main

if __name__ == "__main__":
    raise SystemExit(main())
