"""Training entry point for launchers: ``torchrun``, ``deepspeed`` and ``ray job submit``.

Examples::

    # one machine, N processes (gloo on CPU, nccl on GPUs):
    torchrun --nproc_per_node 2 jobs/train.py --config cfg.yaml
    deepspeed --num_gpus 2 jobs/train.py --config cfg.yaml   # on CPU: --num_accelerators 2
    # a Ray cluster: N Ray Train workers (TorchTrainer), one process each:
    ray job submit --working-dir . -- python jobs/train.py --config cfg.yaml --launcher ray --workers 4

The arguments are those of `sarray train` (this calls the same command).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from sarray.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
