"""Speed and memory as users feel them: ``python -m tools.benchmark`` (also ``make bench``).

Three tables, each measured side by side in one invocation, variants alternating, medians:
  1. a whole epoch of the real ``train.py`` command (its defaults: validation, diagnostics,
     checkpoints, TensorBoard, progress bar) against a raw PyTorch loop and the per-sample
     torchvision pipeline doing the same epoch, with each process's peak RSS;
  2. start-up: a trivial run against the bare ``import torch, pytorch_lightning``;
  3. training-step throughput (the inner loop alone), a secondary view;
and, with ``--tables cost``, how whole-run time grows with epochs, data, model and sweeps.
Fashion-MNIST when installed (offline through Debian), else synthetic data of the same shape.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from cnnlab.data.specs import SPECS, get_spec
from tools import CHECKOUT
from tools.bench import MODELS, VARIANTS, prepare_data, report, run_benchmark
from tools.runs import (
    cost_table,
    measure_costs,
    measure_startup,
    measure_whole_epochs,
    startup_table,
    whole_epoch_table,
    whole_epoch_variants,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--epochs", type=int, nargs=2, default=(1, 4), metavar=("LO", "HI"),
        help="whole epoch = (T(HI) - T(LO)) / (HI - LO) of the same command",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="per-sample pipelines' workers")
    parser.add_argument("--data-dir", type=Path, default=CHECKOUT / "data")
    parser.add_argument(
        "--tables", nargs="+", default=["epoch", "startup", "steps"],
        choices=["epoch", "startup", "steps", "cost"],
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=400, help="timed steps (table 3)")
    parser.add_argument("--data", default="fashion_mnist", choices=list(SPECS), help="table 3")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()

    data_dir, real = prepare_data("fashion_mnist", args.data_dir)
    print(f"data: {'Fashion-MNIST' if real else 'synthetic Fashion-MNIST-shaped'} in {data_dir}")
    folder = get_spec("fashion_mnist").target_dir(data_dir)
    out = []
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-") as scratch:
        if "epoch" in args.tables:
            lo, hi = args.epochs
            print(f"\n1. Whole epochs: {lo} and {hi} epochs per variant, {args.repeats} repeats")
            variants = whole_epoch_variants(
                data_dir, folder, 5000, args.workers, ("train.py", "raw loop", "torchvision")
            )
            measure_whole_epochs(variants, lo, hi, args.repeats, Path(scratch))
            out.append(
                f"Whole epoch, LeNet-5 on Fashion-MNIST (55,000 train + 5,000 validation, "
                f"batch 128), epoch = (T{hi} - T{lo}) / {hi - lo}:\n\n"
                + whole_epoch_table(variants, lo, hi)
            )
        if "startup" in args.tables:
            print(f"\n2. Start-up, {args.repeats} repeats")
            startup = measure_startup(data_dir, args.repeats, Path(scratch))
            out.append(
                "Start-up (one batch of train, validation and test):\n\n" + startup_table(startup)
            )
        if "cost" in args.tables:
            print("\n4. Whole-run cost, one run per row")
            cifar_dir, _ = prepare_data("cifar10", args.data_dir)
            rows = measure_costs(data_dir, cifar_dir, Path(scratch))
            out.append("Whole-run time against work (one run each):\n\n" + cost_table(rows))
    if "steps" in args.tables:
        print(f"\n3. Training steps, {args.repeats} repeats")
        steps = {"lenet": args.steps, "vgg11": max(20, args.steps // 3)}
        results = run_benchmark(
            args.models, args.variants, args.data, args.data_dir, args.repeats,
            steps, 20, 128, args.workers,
        )  # fmt: skip
        table = report(results, args.data, args.workers)
        out.append("Training steps only (secondary):\n\n" + table)
    print("\n\n" + "\n\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
