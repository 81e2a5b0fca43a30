"""Small real image folders made offline from Fashion-MNIST, a classical baseline on them, and
the real ``train.py`` command measured on them (``make bench-small-data``).

    python benchmarks/small_data.py folders            # write every folder (PNG files)
    python benchmarks/small_data.py baseline           # SVM (RBF) and logistic regression
    python benchmarks/small_data.py train NAME SET KEY=VALUE ...   # train.py on each folder
    python benchmarks/small_data.py measure            # the README's runs (measured()), in order
    python benchmarks/small_data.py table              # mean ± std of everything logged

Folders (under ``--out``, default ``outputs/small_data/``), each ``train/<class>/*.png`` and
``test/<class>/*.png`` as ``data=folder`` reads them:

  ``fmnist-N-sS``      N training images per class of all ten classes, drawn from the official
                       training split with seed S; the test set is the whole official test
                       split of those classes (the same files for every N and S)
  ``pretrain04``       every official training image of classes 0-4 (the transfer's source)
  ``t59-N-sS``         N training images per class of classes 5-9 (the transfer's target)

Each PNG is named by its index in the official split, so a folder can be checked against
the IDX arrays. Every run appends one JSON line (its command, folder, seed, test accuracy,
wall time) to ``<out>/log.jsonl``; ``table`` reads only that file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's cnnlab, whatever is installed

from cnnlab.data.folder import read_image, scan_folder  # noqa: E402
from cnnlab.data.sources import ensure_dataset  # noqa: E402
from cnnlab.data.specs import get_spec  # noqa: E402

SPEC = get_spec("fashion_mnist")
# folder name prefix -> (classes, training images per class, seeds: one folder drawn by each);
# five draws for the transfer's small folders, whose results vary more from draw to draw
SETS = {
    "fmnist": (tuple(range(10)), (100, 500), (0, 1, 2)),
    "t59": ((5, 6, 7, 8, 9), (50, 200), (0, 1, 2, 3, 4)),
}


def class_folder(label: int) -> str:
    """``3_Dress``: the label first, so that sorted folder names give the labels' order."""
    return f"{label}_{SPEC.classes[label].replace('/', '-')}"


def load_fashion(data_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The official splits as (uint8 images (N, 28, 28), int64 labels), read by cnnlab."""
    folder = ensure_dataset("fashion_mnist", data_dir)
    out = {}
    for split, train in (("train", True), ("test", False)):
        x, y = SPEC.format.read(folder, SPEC, train)
        out[split] = (x[:, 0].numpy(), y.numpy())
    return out


def draw(labels: np.ndarray, classes, per_class: int | None, seed: int) -> np.ndarray:
    """Indices of ``per_class`` images of each class (all of them when None), sorted."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in classes:
        pool = np.flatnonzero(labels == c)
        picked.append(pool if per_class is None else rng.choice(pool, per_class, replace=False))
    return np.sort(np.concatenate(picked))


def write_pngs(folder: Path, images: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> None:
    """``folder/<class>/<index>.png`` for each index, written under a temporary name and
    renamed when complete, so an interrupted run never leaves a short folder behind."""
    if folder.exists():
        return
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    for i in indices:
        d = tmp / class_folder(int(labels[i]))
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i], mode="L").save(d / f"{i:05d}.png")
    tmp.rename(folder)


def make_folder(
    out: Path, name: str, data: dict, classes, per_class: int | None, seed: int
) -> Path:
    """``out/name/train`` (``per_class`` images of each class, drawn with ``seed``) and
    ``out/name/test``, a link to the shared test folder of these classes (the whole test
    split), so every folder of a set is tested on the same files (and decoded once)."""
    x, y = data["train"]
    folder = out / name
    write_pngs(folder / "train", x, y, draw(y, classes, per_class, seed))
    test_name = f"test-{''.join(map(str, classes))}"
    tx, ty = data["test"]
    write_pngs(out / test_name, tx, ty, draw(ty, classes, None, 0))
    link = folder / "test"
    if not link.exists():
        link.symlink_to(Path("..") / test_name)
    return folder


def make_all(out: Path, data_dir: Path, sets, seeds) -> list[Path]:
    data = load_fashion(data_dir)
    made = [make_folder(out, "pretrain04", data, range(5), None, 0)]
    for prefix in sets:
        classes, sizes, default_seeds = SETS[prefix]
        for n in sizes:
            for s in seeds or default_seeds:
                made.append(make_folder(out, f"{prefix}-{n}-s{s}", data, classes, n, s))
    return made


# ---------------------------------------------------------------------------- classical baseline


def read_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A folder's ``split`` ('train' or 'test') as raw pixels in [0, 1] (N, H*W) and labels,
    read by cnnlab's own folder reader (grayscale, at the images' own 28x28)."""
    layout = scan_folder(folder)
    files = layout.train if split == "train" else layout.test
    x = np.stack([read_image(p, 1, 28).numpy().reshape(-1) for p, _ in files])
    return x.astype(np.float32) / 255, np.array([label for _, label in files])


def classical_baseline(folder: Path) -> dict[str, float]:
    """Test accuracy of an SVM (RBF kernel, C=10, gamma='scale') and of logistic regression
    (C=0.1), on raw pixels, fitted on the folder's train/ images and scored on its test/
    images. C is fixed rather than searched per folder: on fmnist-100-s0 a 3-fold search over
    1, 3, 10, 30 (SVM) and 0.01, 0.1, 1 (logistic) gave the same test accuracies, and took
    minutes per folder on 2 cores."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    x, y = read_split(folder, "train")
    tx, ty = read_split(folder, "test")
    models = {
        "svm_rbf": SVC(kernel="rbf", C=10, gamma="scale"),
        "logreg": LogisticRegression(C=0.1, max_iter=1000),
    }
    return {name: float((m.fit(x, y).predict(tx) == ty).mean()) for name, m in models.items()}


# ---------------------------------------------------------------------------- measured runs


def log_line(out: Path, record: dict) -> None:
    with open(out / "log.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def run_baseline(out: Path, sets, seeds) -> None:
    for prefix in sets:
        for n in SETS[prefix][1]:
            for s in seeds or SETS[prefix][2]:
                folder = out / f"{prefix}-{n}-s{s}"
                t0 = time.time()
                accs = classical_baseline(folder)
                for name, acc in accs.items():
                    rec = {"name": name, "set": f"{prefix}-{n}", "seed": s, "folder": str(folder)}
                    rec |= {"command": "python benchmarks/small_data.py baseline", "test_acc": acc}
                    log_line(out, rec | {"wall_s": round(time.time() - t0, 1)})
                    print(f"{name} {folder.name}: {acc:.4f}")


def measured(out: Path) -> list[tuple[str, str, list[str], tuple[int, ...]]]:
    """The README's table: (name, folder set, overrides, seeds); each pair of folder and seed
    is one run. The pretraining comes before the runs that start from its best checkpoint."""
    recipe = ["experiment=small_data"]
    start = out / "runs" / "pretrain15" / "pretrain04-seed0" / "checkpoints" / "best.ckpt"
    seeds = SETS["fmnist"][2]
    runs = [("defaults", f"fmnist-{n}", [], seeds) for n in (100, 500)]
    runs += [("small_data", f"fmnist-{n}", recipe, seeds) for n in (100, 500)]
    # 15 epochs: a 3-epoch pretraining (93.2% on classes 0-4 against 95.0%) was worth a third
    # as much to the fine-tunes (docs/TRANSFER.md)
    runs.append(("pretrain15", "pretrain04", [*recipe, "trainer.max_epochs=15"], (0,)))
    for n in (50, 200):
        seeds = SETS["t59"][2]
        runs.append(("pretrained15", f"t59-{n}", [*recipe, f"model.init_from={start}"], seeds))
        runs.append(("scratch", f"t59-{n}", recipe, seeds))
        runs.append(("defaults", f"t59-{n}", [], seeds[:3]))
    return runs


def train_once(out: Path, name: str, folder: Path, seed: int, overrides: list[str], limit: int):
    """``python train.py data=folder data.root=FOLDER seed=SEED OVERRIDES`` in a fresh run
    directory; its metrics.json's test/acc is logged with the exact command."""
    run_dir = out / "runs" / name / f"{folder.name}-seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    args = [*overrides, "data=folder", f"data.root={folder}", f"seed={seed}"]
    # one thread and no TensorBoard: on a shared 2-core machine, two threads that wait on
    # each other were 4x slower; neither changes the results
    cmd = [
        sys.executable,
        "train.py",
        *args,
        f"hydra.run.dir={run_dir}",
        "logger=none",
        "threads=1",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t0 = time.time()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
    wall = round(time.time() - t0, 1)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rec = {"name": name, "set": folder.name.rsplit("-s", 1)[0], "seed": seed}
    rec |= {"folder": str(folder), "command": "python train.py " + " ".join(args)}
    rec |= {"test_acc": metrics["test/acc"], "epochs": metrics.get("epochs"), "wall_s": wall}
    log_line(out, rec)
    print(f"{name} {folder.name}: {metrics['test/acc']:.4f} ({wall} s)", flush=True)
    return rec


def table(out: Path, names: list[str] | None = None, sets: list[str] | None = None) -> str:
    """Markdown: one row per (folder set, method), mean ± std of test accuracy over the logged
    seeds (the latest record of each), the median wall time and the command (S: the seed).
    ``names``: only these methods, in this order within each folder set; ``sets``: only the
    folder sets whose names start with one of these."""
    latest: dict[tuple[str, str], dict[int, dict]] = defaultdict(dict)
    for line in (out / "log.jsonl").read_text().splitlines():
        r = json.loads(line)
        if (names is None or r["name"] in names) and (
            sets is None or r["set"].startswith(tuple(sets))
        ):
            latest[(r["set"], r["name"])][r["seed"]] = r
    order = {n: i for i, n in enumerate(names or [])}
    rows = [
        "| folder | method | test acc % (mean ± std) | seeds | wall s | command |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for (set_, name), by_seed in sorted(
        latest.items(), key=lambda k: (k[0][0], order.get(k[0][1], 0), k[0][1])
    ):
        accs = [r["test_acc"] for r in by_seed.values()]
        sd = f" ± {100 * statistics.stdev(accs):.2f}" if len(accs) > 1 else ""
        wall = statistics.median(r["wall_s"] for r in by_seed.values())
        seed, first = next(iter(by_seed.items()))
        cmd = first["command"].replace(f"{ROOT}{os.sep}", "")  # the seeds' commands differ
        cmd = cmd.replace(f"-s{seed}", "-sS").replace(f"seed={seed}", "seed=S")  # only here
        rows.append(
            f"| {set_} | {name} | {100 * statistics.mean(accs):.2f}{sd} "
            f"| {','.join(map(str, sorted(by_seed)))} | {wall:.0f} | `{cmd}` |"
        )
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "small_data")
    p.add_argument("--data-dir", type=Path, default=ROOT / "data")
    sub = p.add_subparsers(dest="what", required=True)
    for what in ("folders", "baseline"):
        f = sub.add_parser(what)
        f.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
        f.add_argument("--seeds", type=int, nargs="+", help="default: the set's own")
    t = sub.add_parser("train")
    t.add_argument("name", help="the method's name in the log and the table")
    t.add_argument("set", help="fmnist-100, fmnist-500, t59-50, t59-200 or pretrain04")
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    t.add_argument("--limit", type=int, default=900, help="seconds a run may take")
    t.add_argument("overrides", nargs="*")
    m = sub.add_parser("measure")
    m.add_argument("--limit", type=int, default=900, help="seconds a run may take")
    tab = sub.add_parser("table")
    tab.add_argument("names", nargs="*", help="only these methods, in this order")
    tab.add_argument("--sets", nargs="+", help="only folder sets starting with these")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.what == "folders":
        for f in make_all(a.out, a.data_dir, a.sets, a.seeds):
            print(f)
    elif a.what == "baseline":
        run_baseline(a.out, a.sets, a.seeds)
    elif a.what in ("train", "measure"):
        runs = measured(a.out) if a.what == "measure" else [(a.name, a.set, a.overrides, a.seeds)]
        for name, set_, overrides, seeds in runs:
            for s in seeds:
                folder = a.out / (set_ if set_ == "pretrain04" else f"{set_}-s{s}")
                train_once(a.out, name, folder, s, overrides, a.limit)
    else:
        print(table(a.out, a.names or None, a.sets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
