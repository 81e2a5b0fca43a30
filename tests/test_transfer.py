"""Transfer learning (issue 37): torchvision/timm nets by name, start weights, fine-tuning.

Weights cannot be downloaded here: the real loading code is fed files made here (a state
dict of a torchvision net built here, placed where torch's cache expects it) and cnnlab
checkpoints of tiny runs.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torchvision

from cnnlab.build import build
from cnnlab.config import PROJECT_ROOT
from cnnlab.errors import CnnlabError, ConfigError, ModelError
from cnnlab.models.zoo import TorchvisionNet
from cnnlab.record import fingerprint
from cnnlab.run import evaluate, train

from .conftest import QUICK, make_cfg, one_line_error, subprocess_env, tiny_run

# a torchvision net on tiny 28x28 MNIST-format data, as fast as it gets
TINY = (*QUICK, "data.eval_batch_size=100", "trainer.limit_val_batches=1")
RESNET = "resnet18-f37072fd.pth"  # the file name of torchvision's published resnet18 weights


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory) -> Path:
    """A 1-epoch LeNet-5 run: the earlier run a later one starts from (``model.init_from``)."""
    tmp = tmp_path_factory.mktemp("lenet")
    tiny_run(tmp, "trainer.max_epochs=1", "test=false")
    return tmp / "run" / "checkpoints" / "last.ckpt"


def published_resnet18(folder: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """A stand-in for torchvision's published resnet18 weights (1000 classes), saved under
    ``folder``/hub/checkpoints/ with the published file's name, as a download leaves it."""
    torch.manual_seed(seed)
    state = torchvision.models.resnet18(weights=None).state_dict()
    (folder / "hub" / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "hub" / "checkpoints" / RESNET)
    return state


def offline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An empty weights cache, and every download refused at once (a dead proxy)."""
    dead = "http://127.0.0.1:9"
    return subprocess_env(
        TORCH_HOME=str(tmp_path / "torch"),
        HF_HOME=str(tmp_path / "hf"),
        https_proxy=dead,
        HTTPS_PROXY=dead,
        http_proxy=dead,
        HTTP_PROXY=dead,
        **extra,
    )


# -- 1. any net of the field, by name ---------------------------------------------------------
def test_unknown_arch_lists_close_matches():
    with pytest.raises(ModelError, match=r"'resnet19' is not a torchvision .*resnet18"):
        TorchvisionNet((3, 32, 32), 10, arch="resnet19")


def test_every_torchvision_classifier_is_offered_by_its_registry():
    from cnnlab.models.zoo import torchvision_names

    names = torchvision_names()
    assert set(names) == set(torchvision.models.list_models(module=torchvision.models))
    assert {"resnet18", "mobilenet_v3_small", "efficientnet_b0", "vit_b_16"} <= set(names)
    # no detection, segmentation or video model (they live in submodules)
    assert not any(n.startswith(("fasterrcnn", "deeplab", "r3d", "raft")) for n in names)


def test_head_is_built_for_the_class_count_and_gray_repeats_the_channel():
    torch.manual_seed(0)
    net = TorchvisionNet((1, 32, 32), 7, arch="resnet18").eval()
    assert net.model.fc.out_features == 7
    x = torch.rand(2, 1, 32, 32)
    same = net.model(x.repeat(1, 3, 1, 1))
    assert torch.equal(net(x), same)
    # the documented equivalence: the same as summing the stem's kernels over its channels
    stem = net.model.conv1
    summed = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    summed.weight.data = stem.weight.sum(dim=1, keepdim=True)
    net.model.conv1 = summed
    torch.testing.assert_close(net.model(x), same, rtol=1e-4, atol=1e-5)


def test_a_net_too_small_for_the_images_names_the_image_size(tiny_mnist, tmp_path):
    cfg = make_cfg(tmp_path, tiny_mnist, "model=torchvision", "model.arch=vit_b_16")
    with pytest.raises(ModelError, match=r"cannot take 28x28 images .* data.image_size=224"):
        build(cfg)
    cfg = make_cfg(tmp_path, tiny_mnist, "model=torchvision", "model.arch=vgg11")
    with pytest.raises(ModelError, match=r"too deep for this image size.* data.image_size=32 "):
        build(cfg)


def test_a_net_too_big_for_the_memory_is_refused_before_it_is_made(
    tiny_mnist, tmp_path, monkeypatch
):
    import psutil

    class Tight:
        available = 100 * 2**20  # 100 MiB: resnet18 needs 11.7 M x 16 bytes

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Tight)
    cfg = make_cfg(tmp_path, tiny_mnist, "model=torchvision", "model.arch=resnet18")
    with pytest.raises(ModelError, match=r"has 11,\d{3},\d{3} parameters: training it needs"):
        build(cfg)


def _end_to_end(tmp_path, tiny_mnist, *model, exported: bool = True):
    """Train one epoch of a few batches, then eval, predict with Grad-CAM, export and the
    layer table: everything that reads a checkpoint rebuilds the net from it."""
    from PIL import Image

    from cnnlab.export import export
    from cnnlab.predict import predict

    cfg = make_cfg(
        tmp_path, tiny_mnist, *model, *TINY, "trainer.max_epochs=1", "trainer.limit_train_batches=2"
    )
    metrics = train(cfg)
    assert metrics["status"] == "completed" and metrics["steps"] == 2
    run = Path(cfg.paths.output_dir)
    assert "Conv2d" in (run / "model_summary.txt").read_text()
    ckpt = run / "checkpoints" / "last.ckpt"
    eval_cfg = make_cfg(tmp_path / "eval", tiny_mnist, f"ckpt_path={ckpt}", config="eval")
    assert evaluate(eval_cfg)["test/acc"] == pytest.approx(
        json.loads((run / "metrics.json").read_text())["test/acc"], abs=0.2
    )
    image = Image.fromarray((torch.rand(40, 40) * 255).byte().numpy())
    found = predict(ckpt, image, cam=True)
    assert found.probs.sum().item() == pytest.approx(1, abs=1e-5)
    size = next((int(o.split("=")[1]) for o in model if "image_size" in o), 28)
    assert found.explanation.maps.shape[-2:] == (size, size)
    if not exported:
        return
    path = export(ckpt, "torchscript", tmp_path / "net.pt")
    exported = torch.jit.load(str(path))
    x = torch.randint(0, 255, (2, 1, size, size), dtype=torch.uint8)
    assert exported(x).shape == (2, 10)


def test_mobilenet_v3_small_trains_evaluates_and_explains(tmp_path, tiny_mnist):
    """The fast share of the matrix below (export is there)."""
    args = ("model=torchvision", "model.arch=mobilenet_v3_small")
    _end_to_end(tmp_path, tiny_mnist, *args, exported=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    "model",
    [
        ("model=torchvision", "model.arch=resnet18"),
        ("model=torchvision", "model.arch=mobilenet_v3_small"),
        ("model=torchvision", "model.arch=efficientnet_b0"),
        ("model=timm", "model.arch=convnext_atto", "data.image_size=32"),  # 28 px is refused
        ("model=timm", "model.arch=resnet10t"),
    ],
    ids=lambda m: m[1],
)
def test_published_nets_end_to_end(tmp_path, tiny_mnist, model):
    pytest.importorskip("timm")
    _end_to_end(tmp_path, tiny_mnist, *model)


# -- 2. where the weights come from -----------------------------------------------------------
def _assert_loaded(net, state, head=("fc.weight", "fc.bias")):
    own = net.model.state_dict()
    for key, value in state.items():
        if key in head:
            assert own[key].shape != value.shape  # 1000 classes there, 10 here
        else:
            assert torch.equal(own[key], value), key


def test_published_weights_come_from_the_torch_cache(tiny_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    state = published_resnet18(tmp_path / "torch")
    cfg = make_cfg(
        tmp_path, tiny_mnist, "model=torchvision", "model.arch=resnet18", "model.pretrained=true"
    )
    datamodule, model = build(cfg)
    _assert_loaded(model.net, state)
    # inputs follow the weights: ImageNet's size and statistics (averaged: gray data)
    assert datamodule.input_shape == (1, 224, 224)
    assert cfg.data.image_size == 224
    assert datamodule.mean == pytest.approx([(0.485 + 0.456 + 0.406) / 3])
    assert datamodule.std == pytest.approx([(0.229 + 0.224 + 0.225) / 3])


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_weights_file_gives_exactly_its_tensors_but_the_head(
    tiny_mnist, tmp_path, monkeypatch, suffix
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # empty: nothing from the cache
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict()
    file = tmp_path / f"mine{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(file))
    else:
        torch.save(state, file)
    cfg = make_cfg(
        tmp_path,
        tiny_mnist,
        "model=torchvision",
        "model.arch=resnet18",
        f"model.pretrained={file}",
        "data.image_size=32",
    )
    datamodule, model = build(cfg)
    _assert_loaded(model.net, state)
    assert datamodule.input_shape == (1, 32, 32)  # as given, not the weights' 224
    assert not (tmp_path / "torch").exists()


def test_offline_published_weights_fail_in_one_line_leaving_no_folder(tiny_mnist, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "train.py"),
            "model=torchvision",
            "model.arch=resnet18",
            "model.pretrained=true",
            f"paths.data_dir={tiny_mnist}",
            f"hydra.run.dir={run_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=offline_env(tmp_path),
    )
    one_line_error(proc, rf"needs {RESNET} .* not in .*torch/hub/checkpoints .* Put https://")
    assert not run_dir.exists() and not (tmp_path / "torch").exists()


def test_offline_timm_weights_name_the_hugging_face_cache(tmp_path, monkeypatch):
    pytest.importorskip("timm")
    import huggingface_hub

    from cnnlab.data import sources
    from cnnlab.weights import published, published_file

    # a machine whose resolver cannot find the hub, as offline (HF_HUB_OFFLINE left unset)
    monkeypatch.setattr(sources, "unreachable", lambda url: f"no network: {url}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    asked, real = [], huggingface_hub.hf_hub_download

    def download(*args, **kwargs):
        asked.append(kwargs.get("local_files_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    info = published({"_target_": "cnnlab.models.zoo.TimmNet", "arch": "convnext_atto"})
    assert info["image_size"] == 224
    with pytest.raises(ModelError, match=r"needs model.safetensors of timm/convnext_atto"):
        published_file(info)
    # only the cache is asked: the hub's client would retry a connection for seconds
    assert asked == [True]


def test_timm_published_weights_come_from_the_hugging_face_cache(tiny_mnist, tmp_path, monkeypatch):
    pytest.importorskip("timm")
    import timm
    from safetensors.torch import save_file

    # the cache's layout, as a download leaves it: a snapshot folder named by refs/main
    repo = tmp_path / "hf" / "hub" / "models--timm--resnet10t.c3_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    torch.manual_seed(2)
    state = timm.create_model("resnet10t", pretrained=False).state_dict()
    save_file(state, str(repo / "snapshots" / ("0" * 40) / "model.safetensors"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    cfg = make_cfg(
        tmp_path,
        tiny_mnist,
        "model=timm",
        "model.arch=resnet10t",
        "model.pretrained=true",
        "data.image_size=32",
    )
    datamodule, model = build(cfg)
    assert datamodule.input_shape == (1, 32, 32)
    _assert_loaded(model.net, state)


def test_init_from_an_earlier_run_copies_every_tensor(tiny_mnist, lenet_run, tmp_path):
    cfg = make_cfg(tmp_path, tiny_mnist, f"model.init_from={lenet_run}")
    _, model = build(cfg)
    stored = torch.load(lenet_run, weights_only=True)["state_dict"]
    for key, value in model.net.state_dict().items():
        assert torch.equal(value, stored[f"net.{key}"]), key


def test_init_from_another_class_count_starts_the_head_afresh(lenet_run, tmp_path):
    from .conftest import write_folder

    root = tmp_path / "images"
    write_folder(root)  # three classes
    cfg = make_cfg(
        tmp_path,
        None,
        "data=folder",
        f"data.root={root}",
        "data.channels=1",
        "data.val_size=2",
        "data.image_size=28",  # a folder's own key (32 unless given): the earlier run's size
        f"model.init_from={lenet_run}",
    )
    datamodule, model = build(cfg)
    ckpt = torch.load(lenet_run, weights_only=True)
    # the inputs follow the earlier run: its normalisation, not the folder's own statistics
    assert datamodule.mean == tuple(ckpt["cnnlab"]["normalization"]["mean"])
    assert datamodule.normalize_mode == "given"
    stored = ckpt["state_dict"]
    fresh = {k for k, v in model.net.state_dict().items() if v.shape != stored[f"net.{k}"].shape}
    assert fresh and all(v.shape[0] == 3 for k, v in model.net.state_dict().items() if k in fresh)
    for key, value in model.net.state_dict().items():
        if key not in fresh:
            assert torch.equal(value, stored[f"net.{key}"]), key


def test_a_mismatched_checkpoint_lists_its_mismatches(tiny_mnist, lenet_run, tmp_path, caplog):
    start = ("model.batch_norm=true", f"model.init_from={lenet_run}")
    with pytest.raises(ModelError, match=r"missing: .*running_mean.* model.strict=false") as e:
        build(make_cfg(tmp_path, tiny_mnist, *start))
    assert "\n" not in str(e.value)
    with caplog.at_level("INFO", logger="cnnlab"):
        _, model = build(make_cfg(tmp_path, tiny_mnist, *start, "model.strict=false"))
    stored = torch.load(lenet_run, weights_only=True)["state_dict"]
    fits = [k for k, v in model.net.state_dict().items() if f"net.{k}" in stored]
    assert f"Loaded {len(fits)} of {len(model.net.state_dict())} tensors" in caplog.text
    for key in fits:
        assert torch.equal(model.net.state_dict()[key], stored[f"net.{key}"])


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"not a state dict", r"is not a readable weights file"),
        (None, r"holds no state dict"),
    ],
)
def test_a_wrong_weights_file_is_named(tiny_mnist, tmp_path, content, match):
    file = tmp_path / "w.pth"
    if content is None:
        torch.save([1, 2, 3], file)
    else:
        file.write_bytes(content)
    with pytest.raises(ConfigError, match=match):
        build(make_cfg(tmp_path, tiny_mnist, f"model.pretrained={file}"))


def test_published_weights_need_a_published_net(tiny_mnist, tmp_path):
    with pytest.raises(ConfigError, match=r"only model=torchvision and model=timm"):
        build(make_cfg(tmp_path, tiny_mnist, "model.pretrained=true"))


# -- 3. fine-tuning -----------------------------------------------------------------------------
class Watch(pl.Callback):
    """Per step: the backbone's weights, whether it got gradients, both groups' rates."""

    def __init__(self):
        self.steps: list[dict] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        head = set(pl_module.hparams.finetune["head"])
        named = dict(pl_module.net.named_parameters())
        self.steps.append(
            {
                "epoch": trainer.current_epoch,
                "lrs": [g["lr"] for g in optimizer.param_groups],
                "backbone_grads": [named[n].grad is not None for n in named if n not in head],
                "head_grads": [named[n].grad is not None for n in head],
                "backbone": {
                    k: v.detach().clone()
                    for k, v in pl_module.net.state_dict().items()
                    if k not in head
                },
                "bn_training": [
                    m.training
                    for m in pl_module.net.modules()
                    if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                ],
            }
        )


def test_a_frozen_backbone_is_unchanged_until_it_unfreezes(tiny_mnist, tmp_path):
    watch = Watch()
    cfg = make_cfg(
        tmp_path,
        tiny_mnist,
        *QUICK,
        "model.batch_norm=true",
        "finetune.freeze_epochs=2",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=3",
        "test=false",
    )
    train(cfg, callbacks=[watch])
    frozen = [s for s in watch.steps if s["epoch"] < 2]
    after = [s for s in watch.steps if s["epoch"] == 2]
    assert len(frozen) == 6 and len(after) == 3
    assert all(not any(s["backbone_grads"]) and all(s["head_grads"]) for s in frozen)
    assert all(s["bn_training"] == [False] * 4 for s in frozen)  # statistics frozen too
    first = frozen[0]["backbone"]
    for s in frozen[1:]:  # weights and running statistics alike
        assert all(torch.equal(first[k], v) for k, v in s["backbone"].items())
    weights = [k for k in first if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(first[k], after[0]["backbone"][k]) for k in weights)
    assert all(all(s["backbone_grads"]) and all(s["bn_training"]) for s in after)
    assert any(not torch.equal(first[k], v) for k, v in after[-1]["backbone"].items())


def test_last_k_unfreezes_only_the_last_layers(tiny_mnist, tmp_path):
    watch = Watch()
    cfg = make_cfg(
        tmp_path,
        tiny_mnist,
        *QUICK,
        "finetune.freeze_epochs=1",
        "finetune.unfreeze=last_k",
        "finetune.k=1",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=2",
        "test=false",
    )
    train(cfg, callbacks=[watch])
    # LeNet-5: C1, C3, F5, F6 and the head; last_k=1 unfreezes F6 alone
    assert watch.steps[-1]["backbone_grads"] == [False] * 6 + [True] * 2


@pytest.mark.parametrize(
    ("optimizer", "scheduler"),
    [
        ("adam", "warmup_cosine"),
        ("sgd", "onecycle"),
        ("adamw", "step"),
        ("sgd", "cosine"),
        ("adam", "plateau"),
    ],
)
def test_backbone_rate_is_the_multiplier_times_the_heads_at_every_step(
    tiny_mnist, tmp_path, optimizer, scheduler
):
    watch = Watch()
    cfg = make_cfg(
        tmp_path,
        tiny_mnist,
        *QUICK,
        f"optimizer={optimizer}",
        f"scheduler={scheduler}",
        *(["scheduler.step_size=1"] if scheduler == "step" else []),
        "finetune.backbone_lr=0.1",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=4",
        "test=false",
    )
    train(cfg, callbacks=[watch])
    lrs = [s["lrs"] for s in watch.steps]
    assert len(lrs) == 8
    for head, backbone in lrs:
        assert backbone == pytest.approx(0.1 * head, rel=1e-9)
    if scheduler in ("warmup_cosine", "onecycle", "step"):  # the schedule moved both
        assert len({round(h, 12) for h, _ in lrs}) > 1


# a resumed fine-tune: killed in the frozen and in the unfrozen phase, it ends as if never stopped
FT = (
    "trainer.deterministic=true",
    "model.batch_norm=true",
    "finetune.freeze_epochs=2",
    "finetune.backbone_lr=0.5",
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=4",
)


@pytest.fixture(scope="module")
def ft_reference(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("ft"), *FT)[1]


@pytest.mark.parametrize("step", [3, 10], ids=["frozen", "unfrozen"])
def test_a_resumed_fine_tune_continues_in_its_phase(tiny_mnist, tmp_path, ft_reference, step):
    cfg = make_cfg(
        tmp_path,
        tiny_mnist,
        *QUICK,
        *FT,
        "+callbacks.sigterm._target_=tests.test_reliability.SigtermAt",
        f"+callbacks.sigterm.step={step}",
    )
    with pytest.raises(SystemExit):
        train(cfg)
    resumed = train(cfg)  # the same command again resumes from last.ckpt
    keys = ("val/acc", "val/loss", "test/acc", "test/loss", "steps", "epochs")
    assert {k: resumed[k] for k in keys} == {k: ft_reference[k] for k in keys}


def test_finetune_keys_are_in_the_fingerprint_and_free_when_off(tiny_mnist, tmp_path):
    base = make_cfg(tmp_path, tiny_mnist)
    keyed = {fingerprint(make_cfg(tmp_path, tiny_mnist, o)) for o in ("finetune.freeze_epochs=1",)}
    assert fingerprint(base) not in keyed
    from omegaconf import open_dict

    old = copy.deepcopy(base)
    with open_dict(old):  # a run recorded before the keys existed matches a default run
        del old["finetune"]
        for key in ("pretrained", "init_from", "strict"):
            del old.model[key]
        for key in ("image_size", "mean", "std"):
            del old.data[key]
    assert fingerprint(old) == fingerprint(base)
    _, model = build(base)
    assert model.hparams.finetune is None and model.configure_callbacks() == []


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("finetune.freeze_epochs=5", r"finetune.freeze_epochs=5 is beyond trainer.max_epochs=2"),
        ("finetune.unfreeze=some", r"finetune.unfreeze='some' must be all"),
        ("finetune.backbone_lr=0", r"finetune.backbone_lr=0 must be a positive number"),
        ("finetune.k=0", r"finetune.k=0 must be an integer >= 1"),
        ("data.image_size=0", r"data.image_size=0 must be a positive integer"),
        ("data.mean=[0.5,0.5]", r"must be 1 numbers each"),
    ],
)
def test_bad_transfer_values_are_refused_at_build(tiny_mnist, tmp_path, override, match):
    extra = ("data.std=[0.2,0.2]",) if override.startswith("data.mean") else ()
    cfg = make_cfg(tmp_path, tiny_mnist, "trainer.max_epochs=2", override, *extra)
    with pytest.raises(CnnlabError, match=match):
        build(cfg)
