"""Every net on every input shape, the hook-based layer table, ResNets, and LeNet-5's 1998 table."""

from __future__ import annotations

import itertools
from collections import OrderedDict

import pytest
import torch
from torch import nn

from cnnlab.errors import ConfigError, ModelError
from cnnlab.models import (
    MLP,
    VGG,
    AlexNet,
    LeNet5,
    LeNet5Classic,
    check_forward,
    count_params,
    find_convs,
    layer_rows,
    layer_table,
)
from cnnlab.models.blocks import MinPool2d
from cnnlab.models.resnet import ResNet
from cnnlab.models.summary import window_out

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
    rows = layer_rows(net, shape)
    assert rows[-1].shape == (10,) and sum(r.params for r in rows) == count_params(net)


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
        match=r"Layer 'C3' \(Conv2d 4@5x5 s1 p0\) cannot take its 4x4x4 input: it would shrink "
        r"the 4x4 feature map to 0x0, so the model is too deep for this image size",
    ):
        check_forward(nn.Sequential(OrderedDict(layers)), (1, 12, 12))


class _TooDeep(nn.Module):
    """A user's net with nested blocks: the failing layer is named by its full path."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.Sequential(nn.MaxPool2d(4), nn.MaxPool2d(4))
        )
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.body(x).flatten(1))


def test_a_nested_net_too_deep_for_its_input_names_the_nested_layer():
    # 12 -> conv3 -> 10 -> pool4 -> 2 -> pool4 -> 0
    with pytest.raises(
        ModelError, match=r"Layer 'body.1.1' \(MaxPool2d 4x4 s4\) cannot take its 2x2x4"
    ):
        check_forward(_TooDeep(), (1, 12, 12))


def test_a_wrong_dense_width_names_the_layer():
    net = nn.Sequential(OrderedDict(flatten=nn.Flatten(), fc=nn.Linear(10, 2)))
    with pytest.raises(ModelError, match=r"Layer 'fc' \(Linear 2\) cannot take its 784 input"):
        check_forward(net, (1, 28, 28))


def test_layer_table_columns_against_hand_computed_values():
    net = LeNet5Classic((1, 28, 28), 10)
    rows = {r.name: r for r in layer_rows(net, (1, 28, 28))}
    # MACs = output elements x inputs per output: C1 28*28*6 outputs x 1*5*5 weights
    assert rows["C1"].macs == 28 * 28 * 6 * 25 and rows["C3"].macs == 10 * 10 * 16 * 6 * 25
    assert rows["F5"].macs == 400 * 120 and rows["S2"].macs == 0
    # receptive field: C1 5, S2 5+1=6, C3 6+4*2=14, S4 14+1*2=16
    assert [rows[n].receptive_field for n in ("C1", "S2", "C3", "S4")] == [5, 6, 14, 16]
    assert rows["C1"].arithmetic == "(32-5+2*0)/1+1 = 28"  # after padding 28 -> 32
    table = layer_table(net, (1, 28, 28))
    assert "Multiply-accumulates per image: 416.52K" in table  # 117600+240000+48000+10080+840


def test_resnet_parameter_counts_match_the_papers_arithmetic():
    # ResNet-20, 1x1 projection shortcuts: stem 3*16*9 + BN 32; stage 1: 3 x (2*16*16*9 + 64);
    # stage 2: (16*32*9 + 32*32*9 + 128 + 16*32 + 64) + 2 x (2*32*32*9 + 128); stage 3 likewise
    # with 64 channels; head 64*10 + 10
    stage1 = 3 * (2 * 16 * 16 * 9 + 64)
    stage2 = (16 * 32 * 9 + 32 * 32 * 9 + 128 + 16 * 32 + 64) + 2 * (2 * 32 * 32 * 9 + 128)
    stage3 = (32 * 64 * 9 + 64 * 64 * 9 + 256 + 32 * 64 + 128) + 2 * (2 * 64 * 64 * 9 + 256)
    expected = 3 * 16 * 9 + 32 + stage1 + stage2 + stage3 + 64 * 10 + 10
    assert count_params(ResNet((3, 32, 32), 10)) == expected == 272_474
    assert count_params(ResNet((3, 32, 32), 10, blocks=(9, 9, 9))) == 855_770  # paper: 0.85M
    resnet18 = ResNet((3, 32, 32), 10, blocks=(2, 2, 2, 2), channels=(64, 128, 256, 512))
    assert count_params(resnet18) == 11_173_962  # the usual 32 px ResNet-18
    assert resnet18.title == "ResNet-18"


@pytest.mark.parametrize("blocks,depth", [((3, 3, 3), 20), ((9, 9, 9), 56)])
def test_resnet_depth_counts_weighted_layers(blocks, depth):
    net = ResNet((1, 28, 28), 10, blocks=blocks)
    main_path = [n for n, _ in find_convs(net) if "shortcut" not in n]
    assert len(main_path) + 1 == depth  # convs + the final linear layer
    _train_step(net, (1, 28, 28))


def test_resnet_switches_change_the_net():
    plain = ResNet((3, 32, 32), 10, batch_norm=False, dropout=0.3, activation="gelu")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert [m.p for m in plain.modules() if isinstance(m, nn.Dropout)] == [0.3]
    assert any(isinstance(m, nn.GELU) for m in plain.modules())
    assert all(c.bias is not None for _, c in find_convs(plain))
    assert (
        count_params(ResNet((3, 32, 32), 10, width=0.5)) < count_params(ResNet((3, 32, 32), 10)) / 3
    )
    with pytest.raises(ConfigError, match=r"model.dropout=1.5 is outside"):
        ResNet((3, 32, 32), 10, dropout=1.5)


def test_layer_table_of_a_residual_net_stops_the_receptive_field_at_the_first_branch():
    rows = layer_rows(ResNet((3, 32, 32), 10), (3, 32, 32))
    by_name = {r.name: r for r in rows}
    assert by_name["stem.0"].receptive_field == 3
    assert by_name["stages.0.0.conv2"].receptive_field == 7
    assert by_name["stages.0.0.shortcut"].receptive_field is None  # a branch: not a chain
    assert by_name["stages.2.0.conv1"].shape == (64, 8, 8)
    assert by_name["stages.1.0.shortcut.0"].arithmetic == "(32-1+2*0)/2+1 = 16"
    assert rows[-1].shape == (10,)
    assert sum(r.params for r in rows) == 272_474


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


def test_simple_cnn_is_the_decks_network():
    from cnnlab.models.simple_cnn import SimpleCNN

    net = SimpleCNN((3, 32, 32), 10)
    convs = [(m.in_channels, m.out_channels, m.kernel_size, m.padding) for _, m in find_convs(net)]
    assert convs == [(3, 16, (3, 3), (1, 1)), (16, 32, (3, 3), (1, 1)), (32, 64, (3, 3), (1, 1))]
    _train_step(net, (3, 32, 32))


# -- model.head=flatten|gap|gmp ------------------------------------------------------------
def _conv(c_in, c_out, k, bias=True):
    return c_in * c_out * k * k + (c_out if bias else 0)


def _dense(n_in, n_out):
    return n_in * n_out + n_out


def _expected_params(family: str, head: str) -> int:
    """Parameter counts written out by hand from each paper's layout (channels after width)."""
    pooled = head != "flatten"
    if family == "simple_cnn":  # 3x32x32: three 3x3 convs 16, 32, 64; last maps 4x4
        convs = _conv(3, 16, 3) + _conv(16, 32, 3) + _conv(32, 64, 3)
        return convs + _dense(64 if pooled else 4 * 4 * 64, 256) + _dense(256, 10)
    if family == "lenet":  # 1x28x28 padded to 32: C1 6@5x5, C3 16@5x5, maps 5x5 after S4
        convs = _conv(1, 6, 5) + _conv(6, 16, 5)
        return convs + _dense(16 if pooled else 5 * 5 * 16, 120) + _dense(120, 84) + _dense(84, 10)
    if family == "alexnet":  # 3x32x32, width 0.25: 24, 64, 96, 96, 64; three 3/2 pools: 4x4
        chans = [3, 24, 64, 96, 96, 64]
        convs = sum(
            _conv(a, b, k) for a, b, k in zip(chans[:-1], chans[1:], (5, 5, 3, 3, 3), strict=True)
        )
        fc = 1024
        return convs + _dense(64 if pooled else 4 * 4 * 64, fc) + _dense(fc, fc) + _dense(fc, 10)
    if family == "vgg":  # VGG-11 on 3x64x64, width 0.25, batch norm: 5 pools leave 2x2 maps
        chans = [3, 16, 32, 64, 64, 128, 128, 128, 128]
        convs = sum(
            _conv(a, b, 3, bias=False) + 2 * b for a, b in zip(chans[:-1], chans[1:], strict=True)
        )
        fc = 128
        return convs + _dense(128 if pooled else 2 * 2 * 128, fc) + _dense(fc, fc) + _dense(fc, 10)
    raise AssertionError(family)


HEAD_NETS = {
    "simple_cnn": ("cnnlab.models.simple_cnn.SimpleCNN", (3, 32, 32)),
    "lenet": (LeNet5, (1, 28, 28)),
    "alexnet": (AlexNet, (3, 32, 32)),
    "vgg": (VGG, (3, 64, 64)),
}


def _head_net(family: str, head: str) -> nn.Module:
    cls, shape = HEAD_NETS[family]
    if isinstance(cls, str):
        from cnnlab.models.simple_cnn import SimpleCNN as cls
    return cls(shape, 10, head=head)


@pytest.mark.parametrize("head", ["flatten", "gap", "gmp"])
@pytest.mark.parametrize("family", list(HEAD_NETS))
def test_every_conv_family_takes_a_head_and_pools_as_it_says(family, head):
    net = _head_net(family, head)
    shape = HEAD_NETS[family][1]
    assert count_params(net) == _expected_params(family, head)
    # the head's output is every value, or each channel's mean / max of the last maps
    names = list(dict(net.named_children()))
    first_head_layer = names.index(head if head != "flatten" else "flatten")
    x = torch.randn(2, *shape)
    maps = nn.Sequential(*list(net.children())[:first_head_layer])(x)
    vector = nn.Sequential(*list(net.children())[: names.index("flatten") + 1])(x)
    pooled = {"flatten": maps.flatten(1), "gap": maps.mean((2, 3)), "gmp": maps.amax((2, 3))}
    torch.testing.assert_close(vector, pooled[head])
    # after the head every unit sees the whole image: the layer table's receptive field says so
    rf = {row.name: row.receptive_field for row in layer_rows(net, shape)}
    assert rf["flatten"] == max(shape[1:]) and rf.get(head, rf["flatten"]) == max(shape[1:])
    _train_step(net, shape)


@pytest.mark.parametrize("family", ["lenet", "alexnet"])
def test_a_global_pooling_head_takes_larger_images_than_it_was_built_for(family):
    shape = HEAD_NETS[family][1]
    bigger = torch.randn(2, shape[0], shape[1] * 2, shape[2] * 2)
    assert _head_net(family, "gap")(bigger).shape == (2, 10)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        _head_net(family, "flatten")(bigger)  # the first dense layer expects the built size


@pytest.mark.parametrize("family", list(HEAD_NETS))
def test_an_unknown_head_is_refused_with_the_valid_ones(family):
    with pytest.raises(
        ConfigError,
        match=r"Unknown model.head='avg'. Valid: flatten, gap, gmp \(e.g. model.head=gap\)",
    ):
        _head_net(family, "avg")


def test_resnet_pools_globally_by_design_and_refuses_flatten():
    x = torch.randn(2, 3, 32, 32)
    nets = {head: ResNet((3, 32, 32), 10, head=head) for head in ("gap", "gmp")}
    # same weights, so only the pooling differs; the paper's gap is the default
    nets["gmp"].load_state_dict(nets["gap"].state_dict())
    assert count_params(nets["gmp"]) == count_params(ResNet((3, 32, 32), 10))
    for net in nets.values():
        net.eval()
    maps = nets["gap"].stages(nets["gap"].stem(x))
    last = nets["gap"].head[-1]
    for head, reduce in (("gap", maps.mean((2, 3))), ("gmp", maps.amax((2, 3)))):
        torch.testing.assert_close(nets[head](x), last(reduce))
    with pytest.raises(ConfigError, match=r"model.head=flatten does not suit a ResNet.*gap"):
        ResNet((3, 32, 32), 10, head="flatten")


def test_the_readme_shows_the_lenet_classic_layer_table_as_printed():
    from cnnlab.config import PROJECT_ROOT

    readme = (PROJECT_ROOT / "README.md").read_text()
    start = readme.index("LeNet-5 (1998 layout) on MNIST\n")
    shown = readme[start : readme.index("```", start)].rstrip("\n")
    net = LeNet5Classic((1, 28, 28), 10)
    assert layer_table(net, (1, 28, 28), "LeNet-5 (1998 layout) on MNIST") == shown
    assert net.title == "LeNet-5 (1998 layout)"
    # 32x32 inputs need no padding: C1 comes first
    rows = layer_rows(LeNet5Classic((3, 32, 32), 10), (3, 32, 32))
    assert [r.name for r in rows][:3] == ["C1", "S2", "C3"]
