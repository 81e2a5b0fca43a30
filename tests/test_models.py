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
from cnnlab.models.simple_cnn import SimpleCNN
from cnnlab.models.summary import model_title, window_out

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


def test_output_size_formula_agrees_with_pytorch_for_every_window():
    import torch.nn.functional as F

    for size, k, stride, dil, ceil in itertools.product(
        range(1, 10), range(1, 5), range(1, 4), (1, 2), (False, True)
    ):
        for pad in range(k // 2 + 1):  # PyTorch's pooling allows padding up to half the kernel
            x = torch.zeros(1, 1, size, size)
            ours = window_out(size, k, stride, pad, dil, ceil)
            try:
                theirs = F.max_pool2d(x, k, stride, pad, dil, ceil_mode=ceil).shape[-1]
            except RuntimeError:  # "output size is too small"
                assert ours < 1, (size, k, stride, pad, dil, ceil)
            else:
                assert ours == theirs, (size, k, stride, pad, dil, ceil)


def _misfit_message(layer: nn.Module, shape) -> str:
    with pytest.raises(ModelError) as err:
        check_forward(nn.Sequential(OrderedDict([("bad", layer)])), shape)
    return str(err.value)


def test_a_too_deep_message_computes_height_and_width_each_from_its_own_settings():
    # asymmetric kernel, stride, padding and dilation on a tall, narrow input: height
    # (20 + 2 - 2*2 - 1) // 2 + 1 = 9, width (6 - 6 - 1) // 1 + 1 = 0
    conv = nn.Conv2d(1, 2, (3, 7), stride=(2, 1), padding=(1, 0), dilation=(2, 1))
    assert "shrink the 20x6 feature map to 9x0, so the model is too deep" in _misfit_message(
        conv, (1, 20, 6)
    )
    # average pooling has no dilation: 1; (2 - 2 - 1) // 1 + 1 = 0
    assert "shrink the 5x2 feature map to 3x0" in _misfit_message(
        nn.AvgPool2d(3, stride=1), (1, 5, 2)
    )
    # ceil mode counts a last, partial window: (1 - 3 - 1) / 2 rounded up, + 1 = 0 (floor: -1)
    assert "shrink the 1x1 feature map to 0x0" in _misfit_message(
        nn.MaxPool2d(4, stride=2, ceil_mode=True), (1, 1, 1)
    )


def test_a_layer_that_fails_for_another_reason_is_named_with_the_first_line_of_its_error():
    message = _misfit_message(nn.BatchNorm2d(8), (4, 6, 6))  # 4 channels, not 8
    with pytest.raises(RuntimeError) as torch_error:  # what torch itself says
        nn.BatchNorm2d(8).eval()(torch.zeros(1, 4, 6, 6))
    assert f"input ({str(torch_error.value).splitlines()[0]})." in message
    assert message.startswith("Layer 'bad' (BatchNorm2d")
    assert "cannot take its 6x6x4 input (" in message
    assert message.endswith("). Check the layer sizes for this input shape.")
    assert "too deep" not in message


def test_first_line_of_an_error():
    from cnnlab.models.summary import _first_line

    assert _first_line(RuntimeError("  shapes differ\n  at line 3 ")) == "shapes differ"
    assert _first_line(ValueError("")) == "ValueError"  # no message: its type


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


def test_lenet_layers_are_named_as_the_paper_names_them():
    # the names are the checkpoints' state_dict keys and what the layer table, the feature
    # maps and Grad-CAM (model layer=C3) show: renaming one breaks every saved checkpoint
    body = ["C1", "C1_act", "S2", "C3", "C3_act", "S4", "flatten"]
    head = ["F5", "F5_act", "F6", "F6_act", "output"]
    assert list(dict(LeNet5((1, 28, 28), 10).named_children())) == [*body, *head]
    classic = LeNet5Classic((1, 28, 28), 10)
    assert list(dict(classic.named_children())) == ["pad", *body, *head]
    assert [classic.S2.kernel_size, classic.S4.kernel_size] == [2, 2]


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


# -- structures written out by hand from each net's description ---------------------------


def structure(net: nn.Module) -> list[str]:
    """One line per leaf layer: its name, type and every setting that changes what it computes."""
    out = []
    for name, m in net.named_modules():
        if not name or any(m.children()):
            continue
        kind = type(m).__name__
        if isinstance(m, nn.Conv2d):
            s = f"{m.in_channels}->{m.out_channels} k{m.kernel_size[0]} s{m.stride[0]} p{m.padding[0]}"
            kind += f" {s} bias={m.bias is not None}"
        elif isinstance(m, nn.Linear):
            kind += f" {m.in_features}->{m.out_features} bias={m.bias is not None}"
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            kind += f" {m.num_features}"
        elif isinstance(m, nn.Dropout):
            kind += f" {m.p:g}"
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            k, s, p = m.kernel_size, m.stride, m.padding
            kind += f" k{k} s{s} p{p} ceil={m.ceil_mode}"
        elif isinstance(m, nn.LocalResponseNorm):
            kind += f" size={m.size} alpha={m.alpha:g} beta={m.beta:g} k={m.k:g}"
        elif isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            kind += f" {m.output_size}"
        out.append(f"{name}: {kind}")
    return out


def test_mlp_layers_with_every_switch():
    net = MLP(
        (1, 28, 28),
        10,
        hidden=[64, 30],
        dropout=0.3,
        input_dropout=0.1,
        batch_norm=True,
        activation="tanh",
        width=0.5,
    )
    assert structure(net) == [
        "flatten: Flatten",
        "input_drop: Dropout 0.1",
        "fc1: Linear 784->32 bias=False",
        "fc1_bn: BatchNorm1d 32",
        "fc1_act: Tanh",
        "fc1_drop: Dropout 0.3",
        "fc2: Linear 32->15 bias=False",
        "fc2_bn: BatchNorm1d 15",
        "fc2_act: Tanh",
        "fc2_drop: Dropout 0.3",
        "output: Linear 15->10 bias=True",
    ]
    assert net.title == "MLP 32-15"


def test_mlp_defaults_and_no_dropout():
    net = MLP((3, 4, 5), 7)
    assert structure(net) == [
        "flatten: Flatten",
        "input_drop: Dropout 0.2",
        "fc1: Linear 60->512 bias=True",
        "fc1_act: ReLU",
        "fc1_drop: Dropout 0.5",
        "fc2: Linear 512->256 bias=True",
        "fc2_act: ReLU",
        "fc2_drop: Dropout 0.5",
        "output: Linear 256->7 bias=True",
    ]
    assert net.title == "MLP 512-256"
    plain = MLP((1, 2, 2), 3, hidden=[5], dropout=0.0, input_dropout=0.0)
    assert structure(plain) == [
        "flatten: Flatten",
        "fc1: Linear 4->5 bias=True",
        "fc1_act: ReLU",
        "output: Linear 5->3 bias=True",
    ]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(hidden=[64, 0]), "model.hidden=[64, 0] must be a list of positive layer widths."),
        (dict(hidden=[64.0]), "model.hidden=[64.0] must be a list of positive layer widths."),
        (dict(hidden=[-3]), "model.hidden=[-3] must be a list of positive layer widths."),
        (
            dict(input_dropout=1.0),
            "model.input_dropout=1.0 is outside [0, 1): it is the probability of zeroing a unit "
            "(e.g. model.input_dropout=0.5; 0 disables dropout).",
        ),
        (dict(dropout=True), "model.dropout=True is outside [0, 1)"),
        (dict(dropout="0.5"), "model.dropout='0.5' is outside [0, 1)"),
        (dict(width=-1.0), "model.width=-1.0 must be a positive number (1.0 = paper size)."),
        (dict(width=True), "model.width=True must be a positive number"),
        (dict(width="1"), "model.width='1' must be a positive number"),
    ],
)
def test_mlp_refuses_bad_values_naming_the_key(kwargs, message):
    with pytest.raises(ConfigError) as err:
        MLP((1, 28, 28), 10, **kwargs)
    assert str(err.value).startswith(message)


def test_check_io_takes_c_h_w_and_at_least_two_classes():
    from cnnlab.models.base import check_io

    assert check_io([3.0, 32, 32], 10.0) == ((3, 32, 32), 10)
    assert check_io((1, 1, 1), 2) == ((1, 1, 1), 2)
    for shape in ((28, 28), (1, 28, 28, 1), (1, 0, 28), (0, 1, 1)):
        with pytest.raises(ValueError) as err:
            check_io(shape, 10)
        assert str(err.value) == f"input_shape must be (C, H, W), got {shape!r}"
    with pytest.raises(ValueError) as err:
        check_io((1, 28, 28), 1)
    assert str(err.value) == "num_classes must be at least 2, got 1"


def test_the_blocks_helpers():
    from cnnlab.models import blocks

    assert [blocks.scaled(c, w) for c, w in ((16, 0.01), (10, 0.25), (10, 0.35), (64, 1.0))] == [
        1,
        2,  # 2.5 rounds to even
        4,  # 3.5 rounds to even
        64,
    ]
    assert blocks.check_rate("k", 0) == 0.0 and type(blocks.check_rate("k", 0)) is float
    assert blocks.check_rate("k", 0.999) == 0.999
    assert blocks.check_width(2) == 2.0 and type(blocks.check_width(2)) is float
    assert blocks.titled("VGG-11", "flatten") == "VGG-11"
    assert blocks.titled("VGG-11", "gmp") == "VGG-11 (gmp)"
    with pytest.raises(ConfigError) as err:
        blocks.activation("swish")
    assert str(err.value) == (
        "Unknown model.activation='swish'. Valid: relu, tanh, sigmoid, leaky_relu, gelu, elu, silu."
    )
    for name, cls in blocks.ACTIVATIONS.items():
        assert type(blocks.activation(name)) is cls
    with pytest.raises(ConfigError) as err:
        blocks.pool("median")
    assert str(err.value) == "Unknown model.pool='median'. Valid: max, avg, min."
    p = blocks.pool("avg", 3, stride=2, padding=1, ceil_mode=True)
    assert isinstance(p, nn.AvgPool2d)
    assert (p.kernel_size, p.stride, p.padding, p.ceil_mode) == (3, 2, 1, True)
    p = blocks.pool("max")
    assert (p.kernel_size, p.stride, p.padding, p.ceil_mode) == (2, 2, 0, False)
    with pytest.raises(ConfigError) as err:
        blocks.head_layers("avg")
    assert (
        str(err.value)
        == "Unknown model.head='avg'. Valid: flatten, gap, gmp (e.g. model.head=gap)."
    )


def test_conv_and_dense_layer_groups():
    from cnnlab.models.blocks import conv_layers, dense_layers, head_layers

    assert structure(nn.Sequential(OrderedDict(conv_layers("c", 3, 8, 5, 2, True, "elu", 2)))) == [
        "c: Conv2d 3->8 k5 s2 p2 bias=False",
        "c_bn: BatchNorm2d 8",
        "c_act: ELU",
    ]
    assert structure(nn.Sequential(OrderedDict(conv_layers("c", 3, 8, 3, 1, False, "relu")))) == [
        "c: Conv2d 3->8 k3 s1 p1 bias=True",
        "c_act: ReLU",
    ]
    assert structure(nn.Sequential(OrderedDict(dense_layers("f", 9, 4, True, "silu", 0.25)))) == [
        "f: Linear 9->4 bias=False",
        "f_bn: BatchNorm1d 4",
        "f_act: SiLU",
        "f_drop: Dropout 0.25",
    ]
    assert structure(nn.Sequential(OrderedDict(dense_layers("f", 9, 4, False, "relu", 0)))) == [
        "f: Linear 9->4 bias=True",
        "f_act: ReLU",
    ]
    assert structure(nn.Sequential(OrderedDict(head_layers("gmp")))) == [
        "gmp: AdaptiveMaxPool2d 1",
        "flatten: Flatten",
    ]
    assert structure(nn.Sequential(OrderedDict(head_layers("gap")))) == [
        "gap: AdaptiveAvgPool2d 1",
        "flatten: Flatten",
    ]
    assert structure(nn.Sequential(OrderedDict(head_layers("flatten")))) == ["flatten: Flatten"]


def test_vgg11_is_configuration_a_with_rounded_up_pools():
    net = VGG((1, 28, 28), 10, depth=11, dropout=0.5, batch_norm=False, width=0.25, fc_width=64)
    convs = [(n, m.in_channels, m.out_channels) for n, m in find_convs(net)]
    assert convs == [
        ("conv1_1", 1, 16),
        ("conv2_1", 16, 32),
        ("conv3_1", 32, 64),
        ("conv3_2", 64, 64),
        ("conv4_1", 64, 128),
        ("conv4_2", 128, 128),
        ("conv5_1", 128, 128),
        ("conv5_2", 128, 128),
    ]
    lines = structure(net)
    assert lines[:3] == [
        "conv1_1: Conv2d 1->16 k3 s1 p1 bias=True",
        "conv1_1_act: ReLU",
        "pool1: MaxPool2d k2 s2 p0 ceil=True",
    ]
    assert lines[-11:] == [
        "conv5_2: Conv2d 128->128 k3 s1 p1 bias=True",
        "conv5_2_act: ReLU",
        "pool5: MaxPool2d k2 s2 p0 ceil=True",  # 28 -> 14 -> 7 -> 4 -> 2 -> 1
        "flatten: Flatten",
        "flatten_drop: Dropout 0.5",
        "F6: Linear 128->16 bias=True",
        "F6_act: ReLU",
        "F6_drop: Dropout 0.5",
        "F7: Linear 16->16 bias=True",  # no dropout after F7
        "F7_act: ReLU",
        "F8: Linear 16->10 bias=True",
    ]
    assert net.title == "VGG-11"


def test_vgg_head_title_and_no_dropout():
    net = VGG((3, 32, 32), 10, depth=13, dropout=0.0, batch_norm=True, width=0.125, head="gmp")
    lines = structure(net)
    assert "flatten_drop" not in " ".join(lines) and "_drop" not in " ".join(lines)
    assert lines[:3] == [
        "conv1_1: Conv2d 3->8 k3 s1 p1 bias=False",
        "conv1_1_bn: BatchNorm2d 8",
        "conv1_1_act: ReLU",
    ]
    assert sum(line.startswith("conv") and "Conv2d" in line for line in lines) == 10
    assert net.title == "VGG-13 (gmp)"
    for depth, convs in ((16, 13), (19, 16)):
        net = VGG((3, 32, 32), 10, depth=depth, width=0.0625)
        assert net.title == f"VGG-{depth}" and len(find_convs(net)) == convs


def test_alexnet_layers_as_the_paper_sized_for_small_images():
    net = AlexNet((3, 32, 32), 10, width=0.125, fc_width=256, dropout=0.4)
    lines = structure(net)
    lrn = "LocalResponseNorm size=5 alpha=0.0001 beta=0.75 k=2"
    pool = "MaxPool2d k3 s2 p1 ceil=False"
    assert lines == [
        "C1: Conv2d 3->12 k5 s1 p2 bias=True",
        "C1_act: ReLU",
        f"C1_lrn: {lrn}",
        f"C1_pool: {pool}",  # 32 -> 16
        "C2: Conv2d 12->32 k5 s1 p2 bias=True",
        "C2_act: ReLU",
        f"C2_lrn: {lrn}",
        f"C2_pool: {pool}",  # 16 -> 8
        "C3: Conv2d 32->48 k3 s1 p1 bias=True",
        "C3_act: ReLU",
        "C4: Conv2d 48->48 k3 s1 p1 bias=True",
        "C4_act: ReLU",
        "C5: Conv2d 48->32 k3 s1 p1 bias=True",
        "C5_act: ReLU",
        f"C5_pool: {pool}",  # 8 -> 4
        "flatten: Flatten",
        "F6: Linear 512->32 bias=True",  # 32 channels x 4 x 4
        "F6_act: ReLU",
        "F6_drop: Dropout 0.4",
        "F7: Linear 32->32 bias=True",
        "F7_act: ReLU",
        "F7_drop: Dropout 0.4",
        "F8: Linear 32->10 bias=True",
    ]
    assert net.title == "AlexNet"
    gap = AlexNet((3, 32, 32), 10, width=0.125, fc_width=256, head="gap", batch_norm=True)
    assert gap.title == "AlexNet (gap)"
    assert "F6: Linear 32->32 bias=True" in structure(gap)  # one value per C5 channel
    assert "C1: Conv2d 3->12 k5 s1 p2 bias=False" in structure(gap)
    assert "C1_bn: BatchNorm2d 12" in structure(gap)


def test_resnet_refuses_a_flatten_head_and_mismatched_stages():
    with pytest.raises(ConfigError) as err:
        ResNet((3, 32, 32), 10, head="flatten")
    assert str(err.value) == (
        "model.head=flatten does not suit a ResNet: it ends in global pooling by design, so the "
        "last linear layer stays small and any image size works. Use model.head=gap (the "
        "paper's) or model.head=gmp (global max pooling)."
    )
    for blocks, channels in (((3, 3), (16, 32, 64)), ((3, 0, 3), (16, 32, 64))):
        with pytest.raises(ValueError) as err:
            ResNet((3, 32, 32), 10, blocks=blocks, channels=channels)
        assert str(err.value) == (
            f"model.blocks={list(blocks)} and model.channels={list(channels)} must be lists of "
            f"the same length with at least one block per stage."
        )
    with pytest.raises(ConfigError, match=r"^model.width=0 must be a positive number"):
        ResNet((3, 32, 32), 10, width=0)


def test_resnet_stages_halve_the_map_after_the_first_and_project_their_shortcuts():
    net = ResNet((3, 32, 32), 10, blocks=(2, 1, 1), channels=(8, 16, 16), head="gmp")
    assert net.title == "ResNet-10 (gmp)"
    blocks = [(n, m) for n, m in net.named_modules() if type(m).__name__ == "BasicBlock"]
    got = [
        (n, m.conv1.in_channels, m.conv1.out_channels, m.conv1.stride[0], type(m.shortcut).__name__)
        for n, m in blocks
    ]
    assert got == [
        ("stages.0.0", 8, 8, 1, "Identity"),
        ("stages.0.1", 8, 8, 1, "Identity"),
        ("stages.1.0", 8, 16, 2, "Sequential"),  # new width and stride: a 1x1 projection
        ("stages.2.0", 16, 16, 2, "Sequential"),  # same width, stride 2: projected too
    ]
    projection = net.stages[1][0].shortcut[0]
    assert (projection.kernel_size, projection.stride, projection.bias) == ((1, 1), (2, 2), None)
    assert isinstance(net.head[0], nn.AdaptiveMaxPool2d) and isinstance(net.head[-2], nn.Identity)
    stem = net.stem[0]
    assert (stem.in_channels, stem.out_channels, stem.kernel_size, stem.padding) == (
        3,
        8,
        (3, 3),
        (1, 1),
    )
    assert net.head[-1].in_features == 16 and net.head[-1].out_features == 10
    gap = ResNet((1, 28, 28), 10, blocks=(1,), channels=(4,))
    assert gap.title == "ResNet-4" and isinstance(gap.head[0], nn.AdaptiveAvgPool2d)
    assert [
        m.p
        for m in ResNet((1, 8, 8), 3, (1,), (4,), dropout=0.2).modules()
        if isinstance(m, nn.Dropout)
    ] == [0.2]


def test_a_basic_block_adds_its_shortcut_before_the_last_activation():
    from cnnlab.models.resnet import BasicBlock

    torch.manual_seed(0)
    block = BasicBlock(3, 3, 1, batch_norm=False, act="tanh").eval()
    x = torch.randn(2, 3, 5, 5)
    inner = block.conv2(torch.tanh(block.conv1(x)))
    assert torch.allclose(block(x), torch.tanh(inner + x), atol=1e-6)
    down = BasicBlock(3, 6, 2, batch_norm=True, act="relu").eval()
    assert isinstance(down.bn1, nn.BatchNorm2d) and isinstance(down.shortcut[1], nn.BatchNorm2d)
    assert down.conv1.bias is None and down.conv2.stride == (1, 1)
    out = down.bn2(down.conv2(torch.relu(down.bn1(down.conv1(x)))))
    assert torch.allclose(down(x), torch.relu(out + down.shortcut(x)), atol=1e-6)


def test_resnet_convolutions_start_from_he_initialisation():
    torch.manual_seed(0)
    net = ResNet((3, 32, 32), 10, blocks=(1, 1, 1), channels=(64, 128, 256))
    conv = net.stages[2][0].conv2  # 256 -> 256, 3x3: fan_out = 256 * 9
    expected = (2 / (256 * 9)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.02)
    assert conv.weight.mean().item() == pytest.approx(0.0, abs=expected / 20)


# -- from surviving mutants of models/mlp.py and models/vgg.py (docs/MUTATION.md) ----------


def test_an_mlp_hidden_layer_of_one_unit_is_allowed_and_zero_is_refused():
    net = MLP((1, 8, 8), 3, hidden=(1,), dropout=0.0, input_dropout=0.0)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 1), (1, 3)]
    with pytest.raises(ConfigError):
        MLP((1, 8, 8), 3, hidden=(0,))


def test_vgg_dense_layers_default_to_the_papers_width_scaled():
    net = VGG((1, 28, 28), 10, width=1.0)  # fc_width's default: 512, as the preset says
    widths = [m.out_features for m in net.modules() if isinstance(m, nn.Linear)]
    assert widths == [512, 512, 10]


def test_vgg_refuses_a_dropout_naming_its_key():
    with pytest.raises(ConfigError, match=r"^model\.dropout=1\.5 is outside \[0, 1\)"):
        VGG((1, 28, 28), 10, dropout=1.5)


# -- from surviving mutants of alexnet.py, resnet.py and simple_cnn.py (docs/MUTATION.md) --


@pytest.mark.parametrize("net", [AlexNet, SimpleCNN])
def test_the_dropout_refusal_names_model_dropout(net):
    with pytest.raises(ConfigError, match=r"^model\.dropout=1\.5 is outside \[0, 1\)"):
        net((1, 28, 28), 10, dropout=1.5)


def test_alexnet_dense_layers_default_to_the_papers_4096_scaled():
    net = AlexNet((1, 28, 28), 10, width=1.0)
    widths = [m.out_features for m in net.modules() if isinstance(m, nn.Linear)]
    assert widths == [4096, 4096, 10]


def test_resnet_convolutions_are_he_initialised_by_fan_out():
    torch.manual_seed(0)
    stem = ResNet((3, 32, 32), 10).stem[0]  # 3 -> 16 channels, 3x3: fan_in 27, fan_out 144
    assert stem.weight.std().item() == pytest.approx((2 / 144) ** 0.5, rel=0.15)  # not 0.27


def test_the_resnet_stem_ends_in_its_activation():
    stem = ResNet((3, 32, 32), 10, activation="tanh").stem
    assert [type(m) for m in stem] == [nn.Conv2d, nn.BatchNorm2d, nn.Tanh]


def test_simple_cnn_layers_are_named_and_built_as_the_deck_draws_them():
    net = SimpleCNN((3, 32, 32), 10, batch_norm=True)
    names = [name for name, _ in net.named_children()]
    assert names[:3] == ["conv1", "conv1_bn", "conv1_act"] and "pool1" in names
    assert {"conv2", "conv3", "pool3", "fc1", "output"} <= set(names) and "conv0" not in names
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 3
    assert model_title(net) == "Simple CNN (flatten)"
    assert model_title(SimpleCNN((3, 32, 32), 10, head="gap")) == "Simple CNN (gap)"


def test_the_layer_table_writes_a_two_dimensional_output_as_its_sizes_joined_by_x():
    # a (C, L) output (a map flattened per channel) is neither HxWxC nor one length
    net = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 4, 3)), ("flat", nn.Flatten(2))]))
    rows = layer_rows(net, (1, 6, 6))
    assert [r.shape_str for r in rows] == ["4x4x4", "4x16"]
    flat = next(line for line in layer_table(net, (1, 6, 6)).splitlines() if line[:4] == "flat")
    assert flat.split()[:3] == ["flat", "Flatten", "4x16"]


def test_lenet_batch_norm_follows_every_conv_and_dense_layer_and_the_title_names_the_head():
    net = LeNet5((1, 28, 28), 10, batch_norm=True)
    names = ["C1", "C1_bn", "C1_act", "S2", "C3", "C3_bn", "C3_act", "S4", "flatten"]
    names += ["F5", "F5_bn", "F5_act", "F6", "F6_bn", "F6_act", "output"]
    assert list(dict(net.named_children())) == names
    assert [type(net.C1_bn), type(net.C3_bn)] == [nn.BatchNorm2d, nn.BatchNorm2d]
    assert [type(net.F5_bn), type(net.F6_bn)] == [nn.BatchNorm1d, nn.BatchNorm1d]
    assert LeNet5((1, 28, 28), 10).title == "LeNet-5"
    assert LeNet5((1, 28, 28), 10, head="gap").title == "LeNet-5 (gap)"


# -- from surviving mutants of models/summary.py (sixth round) ----------------------------------
def test_large_counts_read_with_k_m_and_g():
    from cnnlab.models.summary import _si

    counts = (999, 1_000, 1_500, 999_999, 1_000_000, 2_500_000, 10**9, 3_250_000_000)
    assert [_si(n) for n in counts] == [
        "999", "1.00K", "1.50K", "1000.00K", "1.00M", "2.50M", "1.00G", "3.25G",
    ]  # fmt: skip


def test_the_receptive_field_column_is_left_blank_after_a_branch():
    from cnnlab.models.summary import layer_table

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)
            self.fc = nn.Conv2d(2, 3, 1)

        def forward(self, x):
            y = self.conv1(x)
            return self.fc(self.conv2(y) + y)  # fc sees a sum: no single chain's field

    lines = layer_table(Residual(), (1, 5, 5)).splitlines()
    conv2, fc = (next(ln for ln in lines if ln.startswith(n)) for n in ("conv2", "fc"))
    assert conv2.endswith("900   5  (5-3+2*1)/1+1 = 5")  # 3x3 after 3x3: a field of 5
    assert fc.endswith("150      (5-1+2*0)/1+1 = 5")


def test_a_layer_returning_a_tuple_gets_a_row_without_a_shape():
    from cnnlab.models.summary import layer_rows

    class Pair(nn.Module):  # a leaf layer of a user's own net that returns two tensors
        def forward(self, x):
            return x, -x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair, self.fc = Pair(), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.pair(x)[0])

    rows = layer_rows(Net(), (4,))
    assert [(r.name, r.shape) for r in rows] == [("pair", ()), ("fc", (2,))]


def test_the_table_shows_ceil_mode_skips_dilated_windows_and_counts_frozen_and_grouped_layers():
    from cnnlab.models.summary import layer_rows, layer_table

    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, groups=2),  # 2 input channels per output: 7x7x4x2x9 MACs
        nn.MaxPool2d(2, ceil_mode=True),  # 7 -> 4 rounding up
        nn.Conv2d(4, 4, 3, dilation=(1, 2), padding=(1, 2)),  # no (W-K+2P)/S+1 when dilated
    )
    net[2].requires_grad_(False)
    rows = layer_rows(net, (2, 7, 7))
    assert [r.arithmetic for r in rows] == [
        "(7-3+2*1)/1+1 = 7",
        "(7-2+2*0)/2+1 = 4 ⌈⌉",
        "",
    ]
    assert rows[0].macs == 7 * 7 * 4 * 1 * 9 and isinstance(rows[0].macs, int)
    table = layer_table(net, (2, 7, 7))
    assert "Total params: 188" in table and "Trainable params: 40" in table  # 4x1x9 + 4
    assert "Non-trainable params: 148" in table  # 4x4x9 + 4, frozen
