"""Where a classifier looks: Grad-CAM for any net with a conv layer, gradient saliency otherwise.

Own hooks, not the ``grad-cam`` package: Grad-CAM is one forward hook and one gradient (a
few dozen lines here), while the package brings OpenCV, scikit-learn-style extras and its
own model wrappers for a method this small; cnnlab finds the conv layers itself
(``find_convs``), for any ``nn.Module``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.summary import find_convs


@dataclass
class Explanation:
    maps: torch.Tensor  # (N, H, W) in [0, 1], at the input's size
    targets: torch.Tensor  # (N,) the class each map explains
    method: str  # "Grad-CAM" or "saliency"
    layer: str | None  # the conv layer Grad-CAM read (None for saliency)


def explain(
    net: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor | int | None = None,
    layer: str | None = None,
) -> Explanation:
    """Grad-CAM of ``layer`` (default: the last conv) for class ``target`` (default: each
    image's top class); a net without conv layers gets a gradient saliency map instead.

    Runs with gradients even inside ``no_grad`` or Lightning's inference mode (test hooks).
    """
    convs = dict(find_convs(net))
    if layer and layer not in convs:
        raise CnnlabError(
            f"cam_layer={layer!r} is not a conv layer of this net; its conv layers: "
            f"{', '.join(convs) or 'none (an MLP: a saliency map is drawn instead)'}."
        )
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            # plain tensors, even when made in inference mode (autograd refuses those)
            x = x.clone().requires_grad_(not convs)
            if isinstance(target, torch.Tensor):
                target = target.clone()
            if convs:
                name = layer or list(convs)[-1]
                return _grad_cam(net, convs[name], name, x, target)
            return _saliency(net, x, target)
    finally:
        net.train(was_training)


def _targets(logits: torch.Tensor, target) -> torch.Tensor:
    if target is None:
        return logits.argmax(dim=1)
    return torch.as_tensor(target, device=logits.device).expand(len(logits))


def _grad_cam(net, conv: nn.Module, name: str, x, target) -> Explanation:
    """Selvaraju et al. 2017: the layer's maps weighted by the mean gradient of the class
    score over each map, summed, ReLU (only what speaks for the class), upsampled."""
    kept: list[torch.Tensor] = []
    handle = conv.register_forward_hook(lambda module, args, out: kept.append(out))
    try:
        logits = net(x)
    finally:
        handle.remove()
    targets = _targets(logits, target)
    activations = kept[-1]  # a conv called twice (shared weights): its last call
    score = logits.gather(1, targets[:, None]).sum()
    grads = torch.autograd.grad(score, activations)[0]
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activations).sum(dim=1, keepdim=True)).detach()
    cam = nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return Explanation(_unit(cam[:, 0]), targets.detach(), "Grad-CAM", name)


def _saliency(net, x, target) -> Explanation:
    """Simonyan et al. 2014: how strongly each input pixel moves the class score (the largest
    absolute gradient over the channels)."""
    logits = net(x)
    targets = _targets(logits, target)
    score = logits.gather(1, targets[:, None]).sum()
    grads = torch.autograd.grad(score, x)[0]
    return Explanation(_unit(grads.abs().amax(dim=1)), targets.detach(), "saliency", None)


def _unit(maps: torch.Tensor) -> torch.Tensor:
    """Each map scaled to [0, 1] by its own maximum (an all-zero map stays zero)."""
    peak = maps.flatten(1).amax(dim=1).clamp_min(1e-12)
    return maps / peak.view(-1, 1, 1)
