"""README "A dataset torchvision can read: one spec entry + one YAML", done for real: KMNIST is
added to a copy of the config folder and to the spec registry, and nothing else changes."""

from __future__ import annotations

import shutil

from torchvision import datasets as tvd

import cnnlab.config
import tools.docs as docs
from cnnlab.data.formats import Idx
from cnnlab.data.specs import SPECS, DatasetSpec, get_spec
from cnnlab.run import train
from tests.support.synthetic import write_synthetic

from .conftest import QUICK, make_cfg

# the two additions the README asks for, nothing more
KMNIST = DatasetSpec(
    name="kmnist",
    title="Kuzushiji-MNIST",
    format=Idx(tvd.KMNIST, "KMNIST/raw"),
    shape=(1, 28, 28),
    classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    mean=(0.1918,),
    std=(0.3483,),
    train_size=60_000,
    test_size=10_000,
)
KMNIST_YAML = "defaults:\n  - /data_common@_here_\n  - _self_\n\nname: kmnist\n"


def test_a_torchvision_dataset_is_one_spec_entry_and_one_yaml(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    shutil.copytree(cnnlab.config.CONFIG_DIR, conf)
    (conf / "data" / "kmnist.yaml").write_text(KMNIST_YAML)
    monkeypatch.setattr(cnnlab.config, "CONFIG_DIR", conf)
    monkeypatch.setattr(docs, "CONFIG_DIR", conf)
    monkeypatch.setitem(SPECS, "kmnist", KMNIST)

    # the data= options and the unknown-name message list it, as the dataset tests derive them
    assert sorted(p.stem for p in (conf / "data").glob("[!_]*.yaml")) == sorted([*SPECS, "folder"])
    assert get_spec("kmnist") is KMNIST

    # the README's generated model table: it joins the column of its input shape and class count
    monkeypatch.setattr(docs, "model_configs", lambda: ["lenet"])
    header, _, lenet = docs.model_table().splitlines()
    assert "`data=mnist`, `fashion_mnist`, `kmnist`" in header
    assert lenet.startswith("| `lenet` | LeNet-5 |")
    # the tables of datasets and config groups list it too
    assert (
        "| `kmnist` | Kuzushiji-MNIST | 1 x 28 x 28 | 10 | 60,000 / 10,000 | - |"
        in docs.datasets_table()
    )
    assert "`kmnist`" in next(
        r for r in docs.groups_table().splitlines() if r.startswith("| `data`")
    )

    # its files in torchvision's layout, checked, read and trained on by the real code
    data_dir = tmp_path / "data"
    write_synthetic("kmnist", data_dir, n_train=300, n_test=100)
    assert (data_dir / "KMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    cfg = make_cfg(tmp_path, data_dir, "data=kmnist", *QUICK, "trainer.max_epochs=1")
    metrics = train(cfg)
    assert metrics["status"] == "completed" and metrics["data"] == "kmnist"
    assert 0.0 <= metrics["test/acc"] <= 1.0
