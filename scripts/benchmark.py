"""Training throughput and memory, side by side: ``python scripts/benchmark.py`` (also ``make bench``).

Measures, on the same net and data (Fashion-MNIST when installed, else synthetic data of the
same shape), training images/s of a raw PyTorch loop, cnnlab's Trainer path, the same with
aug=light, and the common torchvision per-sample pipeline; each run in a fresh process,
the order rotated across repeats. Prints the ratios, time to first step and peak RSS.
"""

import argparse
import sys
from pathlib import Path

from cnnlab.config import PROJECT_ROOT
from cnnlab.data.specs import SPECS
from cnnlab.dev.bench import MODELS, VARIANTS, report, run_benchmark


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--data", default="fashion_mnist", choices=list(SPECS))
    parser.add_argument("--data-dir", type=Path, default=PROJECT_ROOT / "data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--steps", type=int, default=400, help="timed steps for LeNet-5 (VGG: a third)"
    )
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--workers", type=int, default=2, help="DataLoader workers of the per-sample pipelines"
    )
    args = parser.parse_args()
    steps = {"lenet": args.steps, "vgg11": max(20, args.steps // 3)}
    print(
        f"Benchmark: {args.models} x {args.variants}, batch {args.batch_size}, {args.repeats} repeats"
    )
    results = run_benchmark(
        args.models,
        args.variants,
        args.data,
        args.data_dir,
        args.repeats,
        steps,
        args.warmup,
        args.batch_size,
        args.workers,
    )
    print()
    print(report(results, args.data, args.workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
