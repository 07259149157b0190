"""Training entry point for launchers: ``torchrun``, ``deepspeed`` and ``ray job submit``.

Examples::

    # one machine, N processes (gloo on CPU, nccl on GPUs):
    torchrun --nproc_per_node 2 jobs/train.py --config cfg.yaml
    deepspeed --num_gpus 2 jobs/train.py --config cfg.yaml   # on CPU: --num_accelerators 2
    # a Ray cluster: N Ray Train workers (TorchTrainer), one process each:
    ray job submit --working-dir . -- python jobs/train.py --config cfg.yaml --launcher ray --workers 4

Parses, builds the :class:`sarray.train.config.TrainConfig`, calls one library function.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML training config.")
    parser.add_argument("--launcher", choices=("env", "ray"), default="env",
                        help="env: this process is one rank (torchrun/deepspeed/plain python); "
                             "ray: start --workers Ray Train workers.")
    parser.add_argument("--workers", type=int, default=2, help="Ray Train workers (--launcher ray).")
    parser.add_argument("--gpu", action="store_true", help="One GPU per Ray Train worker.")
    parser.add_argument("--output-dir", default=None, help="Override output_dir of the config.")
    parser.add_argument("--steps", type=int, default=None, help="Override steps of the config.")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed launcher
    args = parser.parse_args(argv)

    from sarray.errors import SarrayError
    from sarray.train.config import TrainConfig

    try:
        config = TrainConfig.from_yaml(args.config, output_dir=args.output_dir, steps=args.steps)
        if args.launcher == "ray":
            from sarray.train.launch import train_with_ray

            result = train_with_ray(config, num_workers=args.workers, use_gpu=args.gpu)
        else:
            from sarray.train.loop import run_training

            result = run_training(config)
    except SarrayError as e:
        print(f"sarray train: error: {e}", file=sys.stderr)
        return 1
    if result.get("export"):
        summary = {k: v for k, v in result.items() if k != "losses"}
        summary["last_loss"] = result["losses"][-1] if result.get("losses") else None
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
