"""Every net on every input shape, the layer arithmetic, and LeNet-5's 1998 table."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from cnnlab.errors import ConfigError, ModelError
from cnnlab.models import MLP, VGG, AlexNet, LeNet5, LeNet5Classic, count_params, layer_rows
from cnnlab.models.blocks import MinPool2d
from cnnlab.models.summary import trace_shapes, window_out

SHAPES = [(1, 28, 28), (3, 32, 32)]
SWITCHES = [
    dict(),
    dict(dropout=0.5, batch_norm=True),
    dict(activation="tanh", pool="avg"),
    dict(activation="gelu", pool="min", width=0.5),
]
NETS = {"mlp": MLP, "lenet": LeNet5, "alexnet": AlexNet, "vgg": VGG}


def _train_step(net: nn.Module, shape) -> None:
    net.train()
    x = torch.randn(4, *shape)
    y = torch.randint(0, 10, (4,))
    logits = net(x)
    assert logits.shape == (4, 10)
    nn.functional.cross_entropy(logits, y).backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize(
    "name,shape,switches",
    [
        (n, s, sw)
        for n, s, sw in itertools.product(NETS, SHAPES, SWITCHES)
        if not (n == "mlp" and "pool" in sw)
    ],
)
def test_forward_backward(name, shape, switches):
    if name == "mlp":
        switches = {k: v for k, v in switches.items() if k != "pool"}
    net = NETS[name](shape, 10, **switches)
    _train_step(net, shape)
    layer_rows(net, shape)  # arithmetic agrees with the forward pass


@pytest.mark.parametrize("depth", [11, 13, 16, 19])
@pytest.mark.parametrize("shape", SHAPES)
def test_every_vgg_depth_fits_28_and_32_pixels(depth, shape):
    net = VGG(shape, 10, depth=depth)
    rows = layer_rows(net, shape)
    assert [r.shape for r in rows if r.name == "pool5"] == [(128, 1, 1)]
    assert sum(isinstance(m, nn.Conv2d) for m in net) == depth - 3


def test_alexnet_keeps_the_papers_structure():
    net = AlexNet((3, 32, 32), 10)
    convs = [n for n, m in net.named_children() if isinstance(m, nn.Conv2d)]
    dense = [n for n, m in net.named_children() if isinstance(m, nn.Linear)]
    assert convs == ["C1", "C2", "C3", "C4", "C5"] and dense == ["F6", "F7", "F8"]
    assert [n for n, m in net.named_children() if isinstance(m, nn.LocalResponseNorm)] == [
        "C1_lrn",
        "C2_lrn",
    ]
    assert [n for n, m in net.named_children() if isinstance(m, nn.MaxPool2d)] == [
        "C1_pool",
        "C2_pool",
        "C5_pool",
    ]
    assert [n for n, m in net.named_children() if isinstance(m, nn.Dropout)] == [
        "F6_drop",
        "F7_drop",
    ]
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in AlexNet((3, 32, 32), 10, lrn=False))


def test_lenet_classic_table_matches_the_course():
    rows = layer_rows(LeNet5Classic((1, 28, 28), 10), (1, 28, 28))
    weighted = [(r.kind.split()[0], r.params) for r in rows if r.params]
    assert weighted == [
        ("Conv2d", 156),
        ("Conv2d", 2416),
        ("Linear", 48120),
        ("Linear", 10164),
        ("Linear", 850),
    ]
    shapes = [r.shape_str for r in rows if r.name != "pad"]
    assert shapes == ["28x28x6", "14x14x6", "10x10x16", "5x5x16", "400", "120", "84", "10"]
    assert count_params(LeNet5Classic((1, 28, 28), 10)) == 61706
    assert "tanh" in rows[1].kind and rows[2].kind.startswith("AvgPool2d")


def test_output_size_formula():
    assert window_out(28, 5, 1, 0) == 24  # (28 - 5 + 0) / 1 + 1
    assert window_out(28, 5, 1, 2) == 28  # "same" padding
    assert window_out(32, 2, 2, 0) == 16
    assert window_out(7, 2, 2, 0) == 3 and window_out(7, 2, 2, 0, ceil_mode=True) == 4
    assert window_out(32, 3, 2, 1) == 16


def test_too_small_input_names_the_layer_before_anything_runs():
    layers = [("C1", nn.Conv2d(1, 4, 5)), ("S2", nn.MaxPool2d(2)), ("C3", nn.Conv2d(4, 4, 5))]
    with pytest.raises(
        ModelError,
        match=r"Layer 'C3' \(Conv2d 4@5x5 s1 p0\) would shrink the 4x4 feature map to 0x0",
    ):
        trace_shapes(layers, (1, 12, 12))


@pytest.mark.parametrize("name", list(NETS))
def test_nets_adapt_to_tiny_images_by_design(name):
    # LeNet pads to 32x32, AlexNet's convs and pools are padded, VGG's pools round up
    _train_step(NETS[name]((1, 8, 8), 10), (1, 8, 8))


def test_min_pool_takes_the_minimum():
    x = torch.tensor([[[[1.0, 5.0], [-3.0, 2.0]]]])
    assert MinPool2d(2)(x).item() == -3.0


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(dropout=1.0), r"model.dropout=1.0 is outside \[0, 1\)"),
        (dict(dropout=-0.1), r"model.dropout=-0.1 is outside"),
        (dict(activation="swish"), r"Unknown model.activation='swish'. Valid: relu, tanh"),
        (dict(pool="median"), r"Unknown model.pool='median'. Valid: max, avg, min"),
        (dict(width=0), r"model.width=0 must be a positive number"),
    ],
)
def test_bad_switches_fail_with_the_fix(bad, match):
    with pytest.raises(ConfigError, match=match):
        LeNet5((1, 28, 28), 10, **bad)


def test_bad_vgg_depth_lists_valid_depths():
    with pytest.raises(
        ConfigError, match=r"model.depth=12 is not a VGG depth. Valid: 11, 13, 16, 19"
    ):
        VGG((3, 32, 32), 10, depth=12)
