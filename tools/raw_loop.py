"""The baselines ``make bench`` holds ``train.py`` against: bare PyTorch loops, nothing else.

    python -m tools.raw_loop FOLDER EPOCHS [--pipeline tensor|torchvision] [--workers W]
                                                [--val N] [--channels-last]

Both train cnnlab's LeNet-5 on Fashion-MNIST-shaped IDX files in ``FOLDER`` (torchvision's
``FashionMNIST/raw`` layout) for EPOCHS epochs of the same work ``train.py`` does with its
defaults: 55,000 training images in batches of 128 with fused Adam (lr 1e-3), a validation pass over
the other 5,000 in batches of 1,000 after every epoch, then one pass over the 10,000 test
images. Nothing else: no logging, no checkpoints, no progress bar, no figures.
``--channels-last`` puts the net and its inputs in that memory format, as ``train.py``'s
``channels_last=auto`` does for LeNet-5 on a CPU (``make bench`` passes it to both pipelines,
so each comparison holds everything but the framework or the data pipeline equal).

  tensor       the framework limit: each split as one uint8 tensor in memory, batches cut by
               a random permutation and normalised as they are cut (cnnlab's data strategy,
               so the difference is the framework's alone)
  torchvision  the common per-sample pipeline: torchvision's FashionMNIST, PIL -> ToTensor ->
               Normalize, DataLoader(shuffle=True, num_workers=WORKERS)

It imports torch, numpy and the net only (torchvision for its own pipeline), so its peak RSS is
the baseline for cnnlab's. It prints one JSON line: the time of its first training step
(Unix time) and its final accuracies (a check that it really trained).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab.models.lenet import LeNet5

VAL, BATCH, EVAL_BATCH = 5_000, 128, 1_000  # train.py's defaults (data.val_size, batch sizes)
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST's, as cnnlab's spec has them


def _idx(path: Path) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.uint8)
    ndim = int(raw[3])
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i].tobytes(), "big") for i in range(ndim)]
    return raw[4 + 4 * ndim :].reshape(dims)


def _tensor_splits(folder: Path, val: int):
    def split(prefix):
        x = torch.from_numpy(_idx(folder / f"{prefix}-images-idx3-ubyte")).unsqueeze(1)
        y = torch.from_numpy(_idx(folder / f"{prefix}-labels-idx1-ubyte").astype(np.int64))
        return x, y

    x, y = split("train")
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train_x, train_y = x[perm[val:]], y[perm[val:]]
    val_x, val_y = x[perm[:val]], y[perm[:val]]
    test_x, test_y = split("t10k")

    def batches(xs, ys, size, shuffle):
        order = torch.randperm(len(ys)) if shuffle else torch.arange(len(ys))
        for i in range(0, len(ys), size):
            idx = order[i : i + size]
            yield (xs[idx].float() / 255 - MEAN) / STD, ys[idx]

    return (
        lambda: batches(train_x, train_y, BATCH, True),
        lambda: batches(val_x, val_y, EVAL_BATCH, False),
        lambda: batches(test_x, test_y, EVAL_BATCH, False),
    )


def _torchvision_splits(folder: Path, workers: int, val: int):
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    root = str(folder.parent.parent)  # torchvision wants the folder holding FashionMNIST/raw
    full = datasets.FashionMNIST(root, train=True, download=False, transform=tf)
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(0)).tolist()
    train_set = torch.utils.data.Subset(full, perm[val:])
    val_set = torch.utils.data.Subset(full, perm[:val])
    test = datasets.FashionMNIST(root, train=False, download=False, transform=tf)

    def loader(ds, size, shuffle):
        return torch.utils.data.DataLoader(
            ds, size, shuffle=shuffle, num_workers=workers, persistent_workers=workers > 0
        )

    loaders = loader(train_set, BATCH, True), loader(val_set, EVAL_BATCH, False)
    test_loader = loader(test, EVAL_BATCH, False)
    return (lambda: iter(loaders[0]), lambda: iter(loaders[1]), lambda: iter(test_loader))


def _accuracy(net: nn.Module, batches, layout: torch.memory_format) -> float:
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in batches:
            correct += int((net(x.contiguous(memory_format=layout)).argmax(1) == y).sum())
            total += len(y)
    net.train()
    return correct / total


def main(
    folder: Path,
    epochs: int,
    pipeline: str = "tensor",
    workers: int = 2,
    val_size: int = VAL,
    channels_last: bool = False,
) -> dict:
    torch.set_flush_denormal(True)  # as cnnlab does: denormals slow small nets several times
    torch.manual_seed(0)
    if pipeline == "tensor":
        train, val, test = _tensor_splits(folder, val_size)
    else:
        train, val, test = _torchvision_splits(folder, workers, val_size)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    net = LeNet5((1, 28, 28), 10).to(memory_format=layout)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)  # as conf/optimizer/adam.yaml
    loss_fn = nn.CrossEntropyLoss()
    first_step = None
    for _ in range(epochs):
        for x, y in train():
            first_step = first_step or time.time()
            loss = loss_fn(net(x.contiguous(memory_format=layout)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        val_acc = _accuracy(net, val(), layout)
    test_acc = _accuracy(net, test(), layout)
    return {"first_step": first_step, "val_acc": val_acc, "test_acc": test_acc}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("epochs", type=int)
    parser.add_argument("--pipeline", choices=("tensor", "torchvision"), default="tensor")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--val", type=int, default=VAL)
    parser.add_argument("--channels-last", action="store_true")
    a = parser.parse_args()
    print(json.dumps(main(a.folder, a.epochs, a.pipeline, a.workers, a.val, a.channels_last)))
