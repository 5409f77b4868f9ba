"""Trains a few steps with trainers.train; run under torchrun by tests/test_train.py.

    python -m torch.distributed.run --nproc-per-node 2 tests/ddp_worker.py DATASET RUN_DIR BATCH STEPS
    python tests/ddp_worker.py DATASET RUN_DIR BATCH STEPS            # one process
"""

import sys
from pathlib import Path

from trainers.config import TrainConfig
from trainers.dataset import load_dataset
from trainers.distributed import finish_distributed
from trainers.train import train


def main() -> None:
    dataset, run_dir, batch, steps = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    # Instance norm and no dropout: nothing depends on how the global batch is split.
    cfg = TrainConfig(size=64, ngf=8, ndf=8, norm="instance", dropout=False, epochs=1, batch_size=batch,
                      max_steps=steps, precision="fp32", device="cpu", save_every=0)
    train(cfg, load_dataset(Path(dataset)), run_dir, progress=False)
    finish_distributed()


if __name__ == "__main__":
    main()
