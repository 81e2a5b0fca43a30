"""The net and the data of a config, built and checked before any data is read (``build``):
what training, the model summary, the learning-rate finder and the search start from."""

from __future__ import annotations

import logging
from typing import Any

import torch
from omegaconf import DictConfig
from torch.nn.modules.batchnorm import _BatchNorm

from cnnlab.config import create, overrides, plain
from cnnlab.errors import ConfigError
from cnnlab.finetune import finetune_settings, head_params
from cnnlab.lit import ImageClassifier
from cnnlab.memory_format import channels_last
from cnnlab.models import check_forward, count_params
from cnnlab.models.zoo import check_input_size
from cnnlab.resources import check_fits_in_memory
from cnnlab.weights import fill_inputs, head_keys, load_start, net_args, start_inputs, starts_from

log = logging.getLogger("cnnlab")


def build(cfg: DictConfig):
    """Instantiate data and model from the config; no data is read yet.

    A start from weights (``model.pretrained``, ``model.init_from``: ``cnnlab.weights``) sets
    the data's null input keys (normalisation, image size) first, and its tensors are loaded
    into the net here, unless the run resumes from its own checkpoint.
    """
    node = plain(cfg.model)
    inputs = start_inputs(node)
    datamodule = create(cfg.data, _recursive_=False)
    if inputs and fill_inputs(cfg.data, inputs, datamodule.input_shape[0]):
        datamodule = create(cfg.data, _recursive_=False)  # again, with the weights' inputs
    shape, classes = datamodule.input_shape, datamodule.num_classes
    args = net_args(node)

    def make(num_classes: int, input_shape=shape) -> torch.nn.Module:
        return create(args, input_shape=input_shape, num_classes=num_classes)

    with torch.device("meta"):  # sizes first, storage later: a typo'd width must not fill the RAM
        probe = make(classes)
    # a net that cannot take the data fails here, naming the layer and the image size it takes
    check_input_size(probe, shape, make)
    check_fits_in_memory(count_params(probe, trainable_only=False), model_choice(cfg))
    net = make(classes)
    check_forward(net, shape)  # sizes lazy layers for real
    if datamodule.batch_size < 2 and any(isinstance(m, _BatchNorm) for m in net.modules()):
        raise ConfigError(
            f"data.batch_size={datamodule.batch_size} cannot train batch norm: a batch of one "
            f"image has no variance to normalise by. Use data.batch_size=2 or more, or "
            f"model.batch_norm=false."
        )
    finetune = finetune_settings(plain(cfg.get("finetune")), cfg.trainer.max_epochs)
    starts = starts_from(node)
    head = head_keys(make, classes, shape) if finetune or starts else set()
    if starts and not cfg.get("ckpt_path"):  # a resumed run's checkpoint holds its weights
        log.info(load_start(net, node, head))
    if finetune:
        finetune["head"] = head_params(net, head)
    model = ImageClassifier(
        net,
        num_classes=datamodule.num_classes,
        optimizer=plain(cfg.optimizer),
        scheduler=plain(cfg.get("scheduler")),
        class_names=list(datamodule.classes),
        channels_last=channels_last(cfg.get("channels_last", False), net, cfg.trainer.accelerator),
        compile=cfg.get("compile", False),
        label_smoothing=(cfg.get("loss") or {}).get("label_smoothing", 0.0),
        test_tta=check_tta(cfg.get("test_tta"), datamodule.spec),
        finetune=finetune,
    )
    return datamodule, model


def check_tta(value: Any, spec) -> str | None:
    """``test_tta``: None or "flip", refused for datasets whose mirror images change the class."""
    if value is None:
        return None
    if value != "flip":
        raise ConfigError(
            f"test_tta={value!r} is not a test-time augmentation: use test_tta=flip (the mean "
            f"of each image's and its mirror image's softmax) or test_tta=null."
        )
    if not spec.hflip_keeps_label:
        raise ConfigError(
            f"test_tta=flip is refused for {spec.title}: a mirrored digit is another symbol or "
            f"none, so averaging its prediction in would blur the answer. Use test_tta=null."
        )
    return value


def model_choice(cfg: DictConfig) -> str:
    """The model as the user chose it: model=NAME and its overrides (for messages)."""
    chosen = [o for o in overrides() if o.lstrip("+~").startswith("model")]
    return " ".join(chosen) or f"model {cfg.model.get('_target_', '?')}"
