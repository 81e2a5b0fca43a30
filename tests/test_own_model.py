"""A researcher's own net, added the way the README says: one Python file + one YAML.

The module and the YAML live in temporary folders (not in src/ or conf/), so nothing of
cnnlab is edited: Hydra finds the YAML through ``hydra.searchpath`` and Python the module
through ``sys.path``. The net has a residual connection and functional activations, which
the zoo's flat nets never have.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cnnlab.build import build
from cnnlab.errors import ModelError
from cnnlab.run import train
from cnnlab.viz.figures import feature_maps

from .conftest import make_cfg

NET = """
import torch
from torch import nn


class TinyRes(nn.Module):
    def __init__(self, input_shape, num_classes, channels=8):
        super().__init__()
        self.conv_in = nn.Conv2d(input_shape[0], channels, 3, padding=1)
        self.block = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(channels * 16, num_classes)

    def forward(self, x):
        h = torch.relu(self.conv_in(x))
        h = h + self.block(h)  # the residual connection
        return self.fc(self.pool(h).flatten(1))


class Pools(nn.Module):
    # conv + 2x2 max-pool stages; the dense layer sizes itself (LazyLinear)

    def __init__(self, input_shape, num_classes, stages=2):
        super().__init__()
        self.features = nn.Sequential(
            *[
                nn.Sequential(nn.Conv2d(input_shape[0] if i == 0 else 4, 4, 3, padding=1), nn.MaxPool2d(2))
                for i in range(stages)
            ]
        )
        self.fc = nn.LazyLinear(num_classes)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))
"""


@pytest.fixture
def own_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Writes mynet.py and conf/model/mynet.yaml in tmp_path; returns the overrides to use it."""
    code, conf = tmp_path / "code", tmp_path / "myconf" / "model"
    code.mkdir()
    conf.mkdir(parents=True)
    (code / "mynet.py").write_text(textwrap.dedent(NET))
    (conf / "mynet.yaml").write_text("_target_: mynet.TinyRes\nchannels: 6\n")
    (conf / "pools.yaml").write_text("_target_: mynet.Pools\nstages: 2\n")
    monkeypatch.syspath_prepend(str(code))
    return [f"hydra.searchpath=[file://{tmp_path / 'myconf'}]", "model=mynet"]


def test_own_model_trains_with_its_table_filters_and_feature_maps(own_model, tiny_mnist, tmp_path):
    cfg = make_cfg(
        tmp_path,
        tiny_mnist,
        *own_model,
        "data.val_size=100",
        "data.batch_size=50",
        "trainer.max_epochs=2",
    )
    metrics = train(cfg)
    assert metrics["status"] == "completed" and metrics["model"] == "TinyRes"
    assert metrics["test/acc"] > 0.3  # 10 classes: it learns, it does not only run
    # conv_in 1*6*9+6, block conv 6*6*9+6, BatchNorm 2*6, fc 6*16*10+10
    assert metrics["trainable_params"] == 60 + 330 + 12 + 970

    table = (tmp_path / "run" / "model_summary.txt").read_text()
    for line in ("conv_in ", "block.0 ", "block.1 ", "fc "):
        assert line in table
    assert "Conv2d 6@3x3 s1 p1" in table and "Total params: 1,372" in table

    events = EventAccumulator(str(tmp_path / "run"), size_guidance={"images": 0})
    events.Reload()
    images = set(events.Tags()["images"])
    assert {"filters/conv_in", "feature_maps/conv_in", "feature_maps/block.0"} <= images


def test_own_model_feature_maps_are_what_the_next_layer_sees(own_model, tmp_path):
    _, classifier = build(make_cfg(tmp_path, None, *own_model))
    net = classifier.net
    x = torch.randn(1, 1, 28, 28)
    maps = feature_maps(net, x)
    assert list(maps) == ["conv_in", "block.0"]
    # conv_in is followed by a functional relu (not a module): its map is the conv's output
    torch.testing.assert_close(maps["conv_in"], net.conv_in(x)[0].detach())
    # block.0 is followed by BatchNorm and ReLU modules: its map is after both
    with torch.no_grad():
        net.eval()
        h = torch.relu(net.conv_in(x))
        torch.testing.assert_close(maps["block.0"], net.block(h)[0])
    assert maps["block.0"].min() >= 0


def test_own_model_too_deep_for_the_data_fails_at_build_naming_the_layer(own_model, tmp_path):
    searchpath = own_model[0]
    _, classifier = build(make_cfg(tmp_path, None, searchpath, "model=pools"))
    assert classifier.net.fc.in_features == 4 * 7 * 7  # 28 -> 14 -> 7, sized by the dummy pass
    # 28 -> 14 -> 7 -> 3 -> 1 -> 0: the fifth pool cannot run
    with pytest.raises(
        ModelError,
        match=r"Layer 'features.4.1' \(MaxPool2d 2x2 s2\) cannot take its 1x1x4 input: it would "
        r"shrink the 1x1 feature map to 0x0, so the model is too deep for this image size",
    ):
        build(make_cfg(tmp_path, None, searchpath, "model=pools", "model.stages=5"))


def test_inspect_figures_cover_every_conv_of_a_residual_net(tmp_path):
    from cnnlab.models.resnet import ResNet
    from cnnlab.viz.network import save_network_figures

    net = ResNet((1, 28, 28), 10)  # 19 3x3 convs and 2 1x1 shortcut convs
    written = save_network_figures(net, torch.randn(1, 1, 28, 28), tmp_path)
    names = sorted(p.name for p in written)
    assert sum(n.startswith("filters_") for n in names) == 21
    assert "filters_stages.1.0.shortcut.0.png" in names  # a 1x1 kernel draws as one pixel
    assert sum(n.startswith("features_") for n in names) == 8  # spread over the depth
    assert "features_stem.0.png" in names and "features_stages.2.2.conv2.png" in names
