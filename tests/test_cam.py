"""Grad-CAM and saliency (issue 13, section 3): the map finds what decides the class."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from cnnlab.cam import explain
from cnnlab.errors import CnnlabError

from .conftest import one_line_error, run_script, tiny_run


def _corner_task(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise, plus a bright square top-left (class 0) or bottom-right (class 1)."""
    x = torch.rand(n, 1, 16, 16, generator=g) * 0.3
    y = torch.randint(0, 2, (n,), generator=g)
    x[y == 0, :, 1:5, 1:5] = 1.0
    x[y == 1, :, 11:15, 11:15] = 1.0
    return x, y


def _trained(net: nn.Module, steps: int = 60) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        x, y = _corner_task(64, g)
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def _share_in_the_right_quadrant(maps: torch.Tensor, y: torch.Tensor) -> float:
    peak = maps.flatten(1).argmax(dim=1)
    row, col = peak // 16, peak % 16
    right = torch.where(y == 0, (row < 8) & (col < 8), (row >= 8) & (col >= 8))
    return float(right.float().mean())


def test_grad_cam_peaks_where_the_deciding_square_is():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, 2),
    )  # fmt: skip
    net = _trained(net)
    x, y = _corner_task(200, torch.Generator().manual_seed(1))
    ex = explain(net, x)
    assert ex.method == "Grad-CAM" and ex.layer == "3"  # the last conv by default
    assert ex.maps.shape == (200, 16, 16) and 0 <= ex.maps.min() <= ex.maps.max() <= 1
    assert torch.equal(ex.targets, net(x).argmax(1))  # the top class by default
    assert _share_in_the_right_quadrant(ex.maps, y) > 0.9
    # the other class's map does not point at the square that is there
    other = explain(net, x, target=1 - y)
    assert _share_in_the_right_quadrant(other.maps, y) < 0.5


def test_saliency_of_an_mlp_peaks_on_the_deciding_pixels():
    # a gradient says which pixels move the score, not whether the square is there: the
    # peak lies in one of the two squares' quadrants, not in the noise-only ones
    torch.manual_seed(0)
    net = _trained(nn.Sequential(nn.Flatten(), nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, 2)))
    x, y = _corner_task(200, torch.Generator().manual_seed(1))
    ex = explain(net, x)
    assert ex.method == "saliency" and ex.layer is None
    peak = ex.maps.flatten(1).argmax(dim=1)
    top_left, bottom_right = (
        (peak // 16 < 8) & (peak % 16 < 8),
        (peak // 16 >= 8) & (peak % 16 >= 8),
    )
    assert float((top_left | bottom_right).float().mean()) > 0.9
    # and it is the gradient: the map of a linear model is its weights' magnitude
    linear = nn.Sequential(nn.Flatten(), nn.Linear(256, 2))
    weights = linear[1].weight[1].detach().abs().view(16, 16)
    assert torch.allclose(explain(linear, x[:1], target=1).maps[0], weights / weights.max())


def test_grad_cam_by_hand_on_a_chosen_layer():
    torch.manual_seed(0)
    conv1, conv2 = nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
    head = nn.Linear(4 * 6 * 6, 3)
    net = nn.Sequential(conv1, nn.ReLU(), conv2, nn.Flatten(), head)
    x = torch.randn(2, 1, 6, 6)
    ex = explain(net, x, target=2, layer="0")
    a = conv1(x).detach().requires_grad_(True)  # Grad-CAM of class 2 at the first conv
    score = head(conv2(torch.relu(a)).flatten(1))[:, 2].sum()
    (g,) = torch.autograd.grad(score, a)
    cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1))
    assert torch.allclose(ex.maps, cam / cam.flatten(1).amax(1).view(-1, 1, 1), atol=1e-6)
    with pytest.raises(
        CnnlabError, match=r"cam_layer='fc' is not a conv layer of this net; its conv layers: 0, 2"
    ):
        explain(net, x, layer="fc")


def test_maps_work_inside_inference_mode():  # Lightning's test hooks run there
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 2))
    with torch.inference_mode():
        x = torch.randn(3, 1, 6, 6)
        chosen = torch.tensor([0, 1, 0])
        assert explain(net, x, target=chosen).maps.shape == (3, 6, 6)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cam")
    cfg, metrics = tiny_run(tmp, "trainer.max_epochs=2")
    return Path(cfg.paths.output_dir), metrics


def test_a_run_logs_a_gradcam_grid_at_test_end(checkpoint):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = checkpoint
    acc = EventAccumulator(str(run), size_guidance={"images": 0})
    acc.Reload()
    assert "test/gradcam" in acc.Tags()["images"]


def _predict(*args: str):
    return run_script("scripts/predict.py", *args)


def test_predict_writes_the_overlay_and_refuses_unknown_names(checkpoint, tmp_path):
    run, _ = checkpoint
    ckpt = run / "checkpoints" / "best.ckpt"
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(image)
    out = tmp_path / "cam.png"
    proc = _predict(f"ckpt_path={ckpt}", f"image={image}", "cam_class=3", f"cam_out={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Grad-CAM at C3 of 3:" in proc.stdout and Image.open(out).size[0] > 100
    one_line_error(
        _predict(f"ckpt_path={ckpt}", f"image={image}", "cam_class=cat"),
        r"cam_class='cat' is not a class of this checkpoint; its classes: 0, 1, 2",
    )
    one_line_error(
        _predict(f"ckpt_path={ckpt}", f"image={image}", "cam_layer=F5"),
        r"cam_layer='F5' is not a conv layer of this net; its conv layers: C1, C3",
    )
