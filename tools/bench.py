"""Training throughput and memory, measured side by side in one invocation.

Each measurement runs in a fresh process (``python -m tools.bench VARIANT ...`` prints one
JSON line) so that peak memory is per variant and no variant warms the caches of another.
``run_benchmark`` alternates the variants over the repeats, so machine drift hits all alike.

Variants, on the same net and the same data:
  raw          a bare PyTorch loop over normalised float tensors in memory (the framework limit)
  cnnlab       the Lightning Trainer exactly as train.py builds it (logging, progress bar,
               metrics, checkpoint callbacks; validation excluded from the timed span)
  cnnlab_aug   the same with aug=light (per-sample albumentations in DataLoader workers)
  torchvision  the common per-sample pipeline: torchvision dataset, PIL -> ToTensor ->
               Normalize, DataLoader(shuffle=True, num_workers=W)
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from cnnlab.resources import peak_rss_mb
from tools import CHECKOUT

VARIANTS = ("raw", "cnnlab", "cnnlab_aug", "torchvision")
MODELS = {"lenet": [], "vgg11": ["model.width=0.25"]}


def _peak_rss_mb() -> dict[str, float]:
    return {"peak_rss_mb": peak_rss_mb(), "peak_rss_worker_mb": peak_rss_mb(children=True)}


def _process_start() -> float:
    import psutil

    return psutil.Process().create_time()


def prepare_data(data: str, data_dir: Path) -> tuple[Path, bool]:
    """The real dataset when it can be had offline, else synthetic files of the same shape."""
    from cnnlab.data.sources import DEFAULT_MIRRORS, ensure_dataset
    from cnnlab.errors import DataError

    try:
        ensure_dataset(data, data_dir, DEFAULT_MIRRORS, download=False)
        return data_dir, True
    except DataError:
        pass
    synthetic = Path(tempfile.gettempdir()) / "cnnlab-bench-data"
    marker = synthetic / f".{data}-written"
    if not marker.exists():
        from cnnlab.data.specs import get_spec
        from tests.support.synthetic import write_synthetic

        spec = get_spec(data)
        sums = write_synthetic(data, synthetic, spec.train_size, spec.test_size)
        (synthetic / f"{data}-md5.json").write_text(json.dumps(sums))
        marker.touch()
    return synthetic, False


def _trust_synthetic(data: str, data_dir: Path) -> None:
    """Synthetic files cannot match the official md5 sums; make torchvision accept theirs."""
    sums_file = data_dir / f"{data}-md5.json"
    if not sums_file.exists():
        return
    from cnnlab.data.specs import get_spec
    from tests.support.formats import md5_overrides

    sums = json.loads(sums_file.read_text())
    for obj, attr, value in md5_overrides(get_spec(data).format, sums):
        setattr(obj, attr, value)


def _config(model: str, data: str, data_dir: Path, out: Path, extra: list[str]):
    from cnnlab.config import compose_config

    overrides = [
        f"model={model}",
        f"data={data}",
        f"paths.data_dir={data_dir}",
        "trainer.accelerator=cpu",
        *MODELS.get(model, []),
        *extra,
    ]
    return compose_config("train", overrides, output_dir=out)


def _net_and_data(cfg):
    from cnnlab.build import build

    datamodule, classifier = build(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule, classifier


def measure(
    variant: str,
    model: str,
    data: str,
    data_dir: Path,
    steps: int,
    warmup: int,
    batch_size: int,
    workers: int,
) -> dict[str, Any]:
    """One variant in this process: images/s over ``steps`` timed steps after ``warmup``."""
    import torch

    from cnnlab.process_settings import configure_torch

    configure_torch()
    torch.manual_seed(0)
    _trust_synthetic(data, data_dir)
    out = Path(tempfile.mkdtemp(prefix="cnnlab-bench-"))  # checkpoints, events: thrown away
    atexit.register(shutil.rmtree, out, True)
    total = warmup + steps
    first_step: list[float] = []
    if variant in ("cnnlab", "cnnlab_aug"):
        from cnnlab.run import train

        timing = out / "timing.json"
        extra = [
            f"data.batch_size={batch_size}",
            "trainer.max_epochs=1",
            f"trainer.limit_train_batches={total}",
            "trainer.limit_val_batches=2",
            "test=false",
            "+callbacks.timer._target_=tools.bench.StepTimer",
            f"+callbacks.timer.warmup={warmup}",
            f"+callbacks.timer.total={total}",
            f"+callbacks.timer.path={timing}",
        ]
        if variant == "cnnlab_aug":
            extra += ["aug=light", f"data.num_workers={workers}"]
        train(_config(model, data, data_dir, out, extra))
        times = json.loads(timing.read_text())
        first_step.append(times["first"])
        seconds = times["t1"] - times["t0"]
    else:
        cfg = _config(model, data, data_dir, out, [f"data.batch_size={batch_size}"])
        datamodule, classifier = _net_and_data(cfg)
        net = classifier.net
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)  # as conf/optimizer/adam.yaml
        loss_fn = torch.nn.CrossEntropyLoss()
        if variant == "raw":
            ds = datamodule.train_set
            x_all = datamodule.normalize(ds.images[ds.indices])  # a float copy: the raw baseline
            y_all = ds.labels[ds.indices]

            def batches():
                while True:
                    perm = torch.randperm(len(y_all))
                    for i in range(0, len(perm) - batch_size + 1, batch_size):
                        idx = perm[i : i + batch_size]
                        yield x_all[idx], y_all[idx]
        else:
            from torchvision import transforms

            spec = datamodule.spec
            tf = transforms.Compose(
                [transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)]
            )
            ds = spec.format.torchvision_dataset(data_dir, train=True, transform=tf)
            loader = torch.utils.data.DataLoader(
                ds,
                batch_size=batch_size,
                shuffle=True,
                num_workers=workers,
                persistent_workers=workers > 0,
            )

            def batches():
                while True:
                    yield from loader

        net.train()
        it = batches()
        for i in range(total):
            if i == 0:
                first_step.append(time.time())
            if i == warmup:
                t0 = time.perf_counter()
            x, y = next(it)
            if classifier.hparams.channels_last:  # the layout train.py's run uses (auto)
                x = x.contiguous(memory_format=torch.channels_last)
            loss = loss_fn(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        seconds = time.perf_counter() - t0
    return {
        "variant": variant,
        "model": model,
        "data": data,
        "images_per_s": round(steps * batch_size / seconds, 1),
        "first_step_s": round(first_step[0] - _process_start(), 2),
        **_peak_rss_mb(),
    }


class StepTimer(pl.Callback):
    """Times the training steps after ``warmup``; added to a run by config (+callbacks.timer)."""

    def __init__(self, warmup: int, total: int, path: str):
        self.warmup, self.total, self.path = warmup, total, path
        self.times: dict[str, float] = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == 0:
            self.times["first"] = time.time()
        if batch_idx == self.warmup:
            self.times["t0"] = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if batch_idx == self.total - 1:
            self.times["t1"] = time.perf_counter()
            Path(self.path).write_text(json.dumps(self.times))


@dataclass
class Result:
    variant: str
    model: str
    data: str
    images_per_s: list[float]
    first_step_s: list[float]
    peak_rss_mb: list[float]
    peak_rss_worker_mb: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.images_per_s)


def run_benchmark(
    models: list[str],
    variants: list[str],
    data: str,
    data_dir: Path,
    repeats: int,
    steps: dict[str, int],
    warmup: int,
    batch_size: int,
    workers: int,
    log=print,
) -> list[Result]:
    """Every (model, variant) ``repeats`` times, each in a fresh process, order rotated per repeat."""
    data_dir, real = prepare_data(data, data_dir)
    log(f"data: {'real ' + data if real else 'synthetic ' + data + '-shaped'} in {data_dir}")
    results: dict[tuple[str, str], Result] = {}
    for r in range(repeats):
        for model in models:
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for variant in order:
                cmd = [
                    sys.executable,
                    "-m",
                    "tools.bench",
                    variant,
                    model,
                    data,
                    str(data_dir),
                    str(steps[model]),
                    str(warmup),
                    str(batch_size),
                    str(workers),
                ]
                proc = subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "PYTHONWARNINGS": "ignore"},
                    cwd=CHECKOUT,  # where tools/ is importable from
                )
                if proc.returncode != 0:
                    raise RuntimeError(f"{variant}/{model} failed:\n{proc.stderr[-3000:]}")
                m = json.loads(proc.stdout.strip().splitlines()[-1])
                res = results.setdefault(
                    (model, variant), Result(variant, model, data, [], [], [], [])
                )
                res.images_per_s.append(m["images_per_s"])
                res.first_step_s.append(m["first_step_s"])
                res.peak_rss_mb.append(m["peak_rss_mb"])
                res.peak_rss_worker_mb.append(m["peak_rss_worker_mb"])
                log(
                    f"  repeat {r + 1}/{repeats} {model:5s} {variant:12s} {m['images_per_s']:9.0f} img/s  "
                    f"peak {m['peak_rss_mb']:.0f} MB"
                )
    return list(results.values())


def report(results: list[Result], data: str, workers: int) -> str:
    """Markdown: per model, median img/s per variant, ratios, first-step time, peak RSS."""
    lines = [
        "| model | variant | images/s (median) | vs raw | cnnlab vs this | first step (s) | peak RSS (MB) | data |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_model: dict[str, dict[str, Result]] = {}
    for r in results:
        by_model.setdefault(r.model, {})[r.variant] = r
    for model, variants in by_model.items():
        raw = variants.get("raw")
        ours = variants.get("cnnlab")
        for name, r in variants.items():
            vs_raw = f"{r.median / raw.median:.2f}" if raw else ""
            ours_vs = f"{ours.median / r.median:.2f}" if ours and name != "cnnlab" else ""
            rss = max(r.peak_rss_mb)
            # RUSAGE_CHILDREN also sees short helper processes torch starts, so the largest
            # child is reported only for the variants that run DataLoader workers
            uses_workers = name == "cnnlab_aug" or (name == "torchvision" and workers > 0)
            rss_text = f"{rss:.0f}" + (
                f" + {max(r.peak_rss_worker_mb):.0f}/worker" if uses_workers else ""
            )
            lines.append(
                f"| {model} | {name} | {r.median:,.0f} | {vs_raw} | {ours_vs} | "
                f"{statistics.median(r.first_step_s):.1f} | {rss_text} | {data} |"
            )
    return "\n".join(lines)


def _main(argv: list[str]) -> None:
    variant, model, data, data_dir, steps, warmup, batch_size, workers = argv
    result = measure(
        variant, model, data, Path(data_dir), int(steps), int(warmup), int(batch_size), int(workers)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    _main(sys.argv[1:])
