"""cnnlab.checkpoint at unit level, on checkpoints built here by hand (no training): what each
refusal says, what a loaded checkpoint rebuilds, and what a resume accepts. The crafted
checkpoints of a real run, opened through the command line, are in test_checkpoint_safety."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cnnlab.checkpoint import (
    KEY,
    AtomicCheckpointIO,
    RunInfo,
    _class_of,
    build_datamodule,
    build_net,
    check_compatible,
    check_layout,
    elapsed_before,
    load_checkpoint,
    load_classifier,
)
from cnnlab.errors import CheckpointError
from cnnlab.lit import ImageClassifier
from cnnlab.models import MLP

CLASSES = ["zero", "one", "two"]
SHAPE = [1, 4, 3]
MODEL = {
    "_target_": "cnnlab.models.MLP",
    "hidden": [5],
    "dropout": 0.0,
    "input_dropout": 0.0,
    "batch_norm": False,
    "activation": "relu",
    "width": 1.0,
}
SGD = {"_target_": "torch.optim.SGD", "lr": 0.1}
ADAM = {"_target_": "torch.optim.Adam", "lr": 0.001}
STEP = {"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": 5, "gamma": 0.1}


def config(**changes) -> dict:
    cfg = {
        "model": dict(MODEL),
        "data": {"_target_": "cnnlab.data.ImageDataModule", "name": "mnist", "batch_size": 7},
        "optimizer": dict(SGD),
        "scheduler": None,
    }
    cfg.update(changes)
    return cfg


def net(hidden=(5,)) -> MLP:
    torch.manual_seed(0)
    return MLP(tuple(SHAPE), len(CLASSES), hidden=list(hidden), dropout=0.0, input_dropout=0.0)


def checkpoint(**changes) -> dict:
    """A checkpoint as cnnlab writes it: Lightning's state_dict and hyper_parameters, the run
    info under ``cnnlab``."""
    model = ImageClassifier(net(), len(CLASSES), optimizer=SGD, class_names=CLASSES)
    ckpt = {
        "state_dict": model.state_dict(),
        "hyper_parameters": {"optimizer": dict(SGD), "scheduler": None},
        KEY: {"config": config(), "input_shape": list(SHAPE), "classes": list(CLASSES)},
    }
    ckpt.update(changes)
    return ckpt


def saved(tmp_path: Path, ckpt, name: str = "last.ckpt") -> Path:
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


def refusal(ckpt: dict, where: str = "here.ckpt") -> str:
    with pytest.raises(CheckpointError) as err:
        check_layout(ckpt, where)
    return str(err.value)


# -- writing -----------------------------------------------------------------------------


def test_atomic_checkpoint_io_writes_the_checkpoint_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.arange(3)}}, path)
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"]["w"], torch.arange(3))
    assert os.listdir(path.parent) == ["last.ckpt"]


def _trainer(mean=None, std=None, framing=None):
    spec = SimpleNamespace(framing=framing)
    return SimpleNamespace(datamodule=SimpleNamespace(mean=mean, std=std, spec=spec))


def test_run_info_stores_config_shape_classes_normalisation_and_framing():
    cfg = config()
    info = RunInfo(cfg, (1, 4, 3), ("a", "b"))
    framing = SimpleNamespace(box=[1, 2, 3, 4], centre=True)
    ckpt: dict = {}
    mean, std = torch.tensor([0.25, 0.5]), (0.125, 2)
    info.on_save_checkpoint(_trainer(mean, std, framing), None, ckpt)
    assert ckpt[KEY] == {
        "config": cfg,
        "input_shape": [1, 4, 3],
        "classes": ["a", "b"],
        "normalization": {"mean": [0.25, 0.5], "std": [0.125, 2.0]},
        "framing": {"box": [1, 2, 3, 4], "centre": True},
    }
    # plain Python floats and lists: weights_only loading accepts them
    assert all(type(v) is float for v in ckpt[KEY]["normalization"]["mean"])
    assert all(type(v) is float for v in ckpt[KEY]["normalization"]["std"])
    assert type(ckpt[KEY]["input_shape"]) is list and type(ckpt[KEY]["classes"]) is list
    # the callback's own info is not changed by a save
    assert "normalization" not in info.info


def test_run_info_without_normalisation_framing_or_start():
    ckpt: dict = {}
    RunInfo(config(), (1, 4, 3), ["a"]).on_save_checkpoint(_trainer(), None, ckpt)
    assert ckpt[KEY]["framing"] is None
    assert "normalization" not in ckpt[KEY] and "elapsed_s" not in ckpt[KEY]
    ckpt = {}
    RunInfo(config(), (1, 4, 3), ["a"]).on_save_checkpoint(SimpleNamespace(), None, ckpt)
    assert ckpt[KEY]["framing"] is None and "normalization" not in ckpt[KEY]


def test_run_info_elapsed_time_adds_the_earlier_parts_and_is_rounded(monkeypatch):
    import cnnlab.checkpoint as checkpoint_module

    monkeypatch.setattr(checkpoint_module, "time", SimpleNamespace(perf_counter=lambda: 1000.0))
    ckpt: dict = {}
    RunInfo(config(), (1, 4, 3), ["a"], started=994.56789).on_save_checkpoint(
        _trainer(), None, ckpt
    )
    assert ckpt[KEY]["elapsed_s"] == 5.43  # earlier_s defaults to 0; two decimals
    RunInfo(config(), (1, 4, 3), ["a"], 994.56789, 100.0).on_save_checkpoint(_trainer(), None, ckpt)
    assert ckpt[KEY]["elapsed_s"] == 105.43


# -- loading -----------------------------------------------------------------------------


def test_a_good_checkpoint_loads_as_it_was_saved(tmp_path):
    ckpt = checkpoint()
    loaded = load_checkpoint(saved(tmp_path, ckpt))
    assert loaded[KEY] == ckpt[KEY]
    assert loaded["state_dict"].keys() == ckpt["state_dict"].keys()
    assert all(torch.equal(loaded["state_dict"][k], v) for k, v in ckpt["state_dict"].items())


def test_a_missing_checkpoint_names_the_checkpoints_beside_it(tmp_path):
    saved(tmp_path, {}, "b.ckpt")
    saved(tmp_path, {}, "a.ckpt")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    gone = tmp_path / "best.ckpt"
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(gone)
    assert str(err.value) == (
        f"ckpt_path={str(gone)!r} does not exist. Checkpoints in {tmp_path}: a.ckpt, b.ckpt. "
        f"Checkpoints are written to <run dir>/checkpoints/ (best.ckpt, last.ckpt)."
    )


def test_a_missing_checkpoint_in_a_folder_without_any_gets_no_list(tmp_path):
    for gone in (tmp_path / "best.ckpt", tmp_path / "nowhere" / "best.ckpt"):
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(gone)
        assert str(err.value) == (
            f"ckpt_path={str(gone)!r} does not exist. Checkpoints are written to "
            f"<run dir>/checkpoints/ (best.ckpt, last.ckpt)."
        )


def test_a_home_relative_checkpoint_path_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    saved(tmp_path, checkpoint())
    assert load_checkpoint("~/last.ckpt")[KEY]["classes"] == CLASSES


def test_a_folder_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path)
    assert str(err.value) == f"ckpt_path={str(tmp_path)!r} is a directory; give a .ckpt file in it."


def test_a_pickled_callable_is_refused_naming_what_it_would_call(tmp_path):
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"state_dict": os.system}, protocol=2))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert message.startswith(f"{path} holds pickled Python objects, not just weights")
    assert f"(it would call {os.system.__module__}.system when opened)" in message
    assert "weights_only=True" in message and "\n" not in message


def test_a_pickle_torch_cannot_read_is_called_unreadable(tmp_path):
    path = tmp_path / "junk.ckpt"
    path.write_bytes(b"not a pickle at all")  # torch: "Unsupported operand 110"
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == (
        f"{path} is not a readable PyTorch checkpoint (its content is not a pickle torch can "
        f"read). It may be truncated; use another checkpoint of the run."
    )


def test_a_truncated_or_empty_file_is_called_unreadable_with_the_first_line_of_the_error(
    tmp_path,
):
    good = saved(tmp_path, checkpoint(), "good.ckpt").read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(cut)
    message = str(err.value)
    assert message.startswith(f"{cut} is not a readable PyTorch checkpoint (RuntimeError: ")
    assert message.endswith(
        "). It may be truncated; use another checkpoint of the run (best.ckpt or last.ckpt)."
    )
    assert "\n" not in message
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(empty)
    assert str(err.value) == (
        f"{empty} is not a readable PyTorch checkpoint (EOFError: empty). It may be truncated; "
        f"use another checkpoint of the run (best.ckpt or last.ckpt)."
    )


def test_an_error_message_is_cut_to_its_first_stripped_line(tmp_path, monkeypatch):
    path = saved(tmp_path, checkpoint())

    def fail(*args, **kwargs):
        raise ValueError("  \n  first line\nsecond line\n")

    monkeypatch.setattr(torch, "load", fail)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == (
        f"{path} is not a readable PyTorch checkpoint (ValueError: first line). It may be "
        f"truncated; use another checkpoint of the run (best.ckpt or last.ckpt)."
    )


def test_an_older_torchs_refusal_of_a_global_is_read_too(tmp_path, monkeypatch):
    """The refusal's other wording, which load_checkpoint also reads (older torch versions:
    "global: posix.system", without the GLOBAL opcode's name)."""
    path = saved(tmp_path, checkpoint())

    def refuse(*args, **kwargs):
        raise pickle.UnpicklingError("Weights only load failed. Unsupported global: posix.system")

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(CheckpointError, match=r"\(it would call posix\.system when opened\)"):
        load_checkpoint(path)


def test_checkpoints_are_always_loaded_as_weights_only_onto_the_cpu(tmp_path, monkeypatch):
    """Whatever torch's defaults (weights_only became the default only in torch 2.6), cnnlab
    asks for weights only, and for CPU tensors (a GPU checkpoint opens on a CPU machine)."""
    path = saved(tmp_path, checkpoint())
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_checkpoint(path)
    assert calls == [{"map_location": "cpu", "weights_only": True}]


@pytest.mark.parametrize(
    "content,message",
    [
        ([1, 2], "is not a Lightning checkpoint (no 'state_dict' inside)."),
        ({"epoch": 3}, "is not a Lightning checkpoint (no 'state_dict' inside)."),
        (
            {"state_dict": {}},
            "was not written by cnnlab (it lacks the run config needed to rebuild the model).",
        ),
    ],
)
def test_a_checkpoint_of_something_else_is_refused(tmp_path, content, message):
    path = saved(tmp_path, content)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == f"{path} {message}"


def test_load_checkpoint_checks_the_layout(tmp_path):
    ckpt = checkpoint()
    ckpt[KEY]["classes"] = []
    path = saved(tmp_path, ckpt)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: its class list is missing")


# -- check_layout ------------------------------------------------------------------------

TAIL = "(written by an older cnnlab, or edited); it cannot rebuild its model. Use a checkpoint written by this version."


def test_check_layout_accepts_a_good_checkpoint_with_or_without_scheduler_and_hparams():
    for scheduler in (None, {}, dict(STEP)):
        ckpt = checkpoint()
        ckpt[KEY]["config"]["scheduler"] = scheduler
        ckpt["hyper_parameters"]["scheduler"] = scheduler
        check_layout(ckpt, "here")
    ckpt = checkpoint()
    del ckpt["hyper_parameters"]
    check_layout(ckpt, "here")
    ckpt = checkpoint()
    del ckpt[KEY]["config"]["scheduler"]
    check_layout(ckpt, "here")


@pytest.mark.parametrize(
    "edit,what",
    [
        (lambda c: c.update({KEY: ["config"]}), "its 'cnnlab' run info is a list, not a mapping"),
        (lambda c: c[KEY].update(config="lenet"), "its 'cnnlab' run info has no config"),
        (lambda c: c[KEY]["config"].pop("model"), "its stored config has no model section"),
        (lambda c: c[KEY]["config"].update(data=None), "its stored config has no data section"),
        (lambda c: c[KEY]["config"].pop("optimizer"), "its stored config has no optimizer section"),
        (lambda c: c[KEY]["config"]["data"].update(name=3), "its stored data config has no dataset name"),
        (lambda c: c[KEY].update(input_shape=(1, 4, 3)), "its input_shape is (1, 4, 3), not [channels, height, width]"),
        (lambda c: c[KEY].update(input_shape=[4, 3]), "its input_shape is [4, 3], not"),
        (lambda c: c[KEY].update(input_shape=[1, 1, 4, 3]), "its input_shape is [1, 1, 4, 3], not"),
        (lambda c: c[KEY].update(input_shape=[1, 4.0, 3]), "its input_shape is [1, 4.0, 3], not"),
        (lambda c: c[KEY].update(input_shape=[True, 4, 3]), "its input_shape is [True, 4, 3], not"),
        (lambda c: c[KEY].update(input_shape=[1, 0, 3]), "its input_shape is [1, 0, 3], not"),
        (lambda c: c[KEY].update(input_shape=[1, 4, -3]), "its input_shape is [1, 4, -3], not"),
        (lambda c: c[KEY].update(classes=("a", "b")), "its class list is tuple"),
        (lambda c: c[KEY].update(classes=["a", 2]), "its class list is list"),
        (lambda c: c[KEY].update(classes=[]), "its class list is missing"),
        (lambda c: c.update(hyper_parameters=["lr"]), "its hyper_parameters are not a mapping"),
    ],
)  # fmt: skip
def test_check_layout_names_what_is_missing(edit, what):
    ckpt = checkpoint()
    edit(ckpt)
    message = refusal(ckpt, "here.ckpt")
    assert message.startswith(f"here.ckpt: {what}")
    assert message.endswith(TAIL)


def test_a_one_pixel_input_shape_is_accepted():
    ckpt = checkpoint()
    ckpt[KEY]["input_shape"] = [1, 1, 1]
    check_layout(ckpt, "here")


@pytest.mark.parametrize(
    "edit,what",
    [
        (lambda c: c[KEY]["config"].update(model={"_target_": "os.system"}), "here: its stored model config has _target_='os.system'"),
        (lambda c: c[KEY]["config"]["data"].update(_target_="os.system"), "here: its stored data config has _target_='os.system'"),
        (lambda c: c[KEY]["config"].update(optimizer={"_target_": "os.system"}), "here: its stored optimizer config has _target_='os.system'"),
        (lambda c: c[KEY]["config"].update(scheduler={"_target_": "os.system"}), "here: its stored scheduler config has _target_='os.system'"),
        (lambda c: c[KEY]["config"].update(scheduler="StepLR"), "here: its stored scheduler config is a str"),
        (lambda c: c["hyper_parameters"].update(optimizer={"_target_": "os.system"}), "here (hyper_parameters): its stored optimizer config has _target_='os.system'"),
        (lambda c: c["hyper_parameters"].update(scheduler={"_target_": "os.system"}), "here (hyper_parameters): its stored scheduler config has _target_='os.system'"),
    ],
)  # fmt: skip
def test_check_layout_refuses_a_class_conf_does_not_name(edit, what):
    ckpt = checkpoint()
    edit(ckpt)
    assert refusal(ckpt, "here").startswith(what)


# -- rebuilding --------------------------------------------------------------------------


def test_build_net_rebuilds_the_net_for_the_stored_shape_and_classes():
    info = {"config": config(), "input_shape": [1, 4, 3], "classes": ["a", "b", "c", "d"]}
    built = build_net(info)
    linear = [m for m in built.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(12, 5), (5, 4)]
    assert built(torch.zeros(2, 1, 4, 3)).shape == (2, 4)


def test_build_net_names_the_file_in_its_error():
    info = {"config": config(model={"_target_": "os.system"}), "input_shape": [1, 4, 3]}
    info["classes"] = ["a"]
    with pytest.raises(CheckpointError, match=r"^x\.ckpt: its stored model config"):
        build_net(info, "x.ckpt")
    with pytest.raises(CheckpointError, match=r"^checkpoint: its stored model config"):
        build_net(info)


def test_build_datamodule_reads_from_the_callers_places_never_the_files(tmp_path):
    data = {
        "_target_": "cnnlab.data.ImageDataModule",
        "name": "mnist",
        "batch_size": 7,
        "data_dir": "/stored/data",
        "mirrors": ["/stored/mirror"],
        "aug": {"hflip": True},
    }
    info = {"config": config(data=data)}
    dm = build_datamodule(info, "x.ckpt", tmp_path / "mine", ["/my/mirror"])
    assert dm.data_dir == str(tmp_path / "mine") and dm.mirrors == ("/my/mirror",)
    assert dm.aug == {} and dm.batch_size == 7 and dm.spec.name == "mnist"
    assert info["config"]["data"]["data_dir"] == "/stored/data"  # the info is not edited


def test_build_datamodule_names_the_file_in_its_error(tmp_path):
    data = {"_target_": "cnnlab.data.ImageDataModule", "name": "mnist", "zoom": 2}
    with pytest.raises(CheckpointError, match=r"^x\.ckpt: its stored data config does not fit"):
        build_datamodule({"config": config(data=data)}, "x.ckpt", tmp_path, [])


def test_build_datamodule_drops_a_stored_root(tmp_path):
    """A folder dataset's ``root`` is a place on disk too: a stored one is never passed on
    (ImageDataModule takes no ``root``: passing it would fail)."""
    data = {"_target_": "cnnlab.data.ImageDataModule", "name": "mnist", "root": "/etc"}
    dm = build_datamodule({"config": config(data=data)}, "x", tmp_path, [])
    assert dm.data_dir == str(tmp_path) and dm.mirrors == ()


def test_load_classifier_restores_the_weights_in_eval_mode(tmp_path):
    ckpt = checkpoint()
    ckpt[KEY]["config"]["scheduler"] = dict(STEP)
    path = saved(tmp_path, ckpt)
    model, info = load_classifier(path)
    assert not model.training and info == ckpt[KEY]
    for key, value in ckpt["state_dict"].items():
        assert torch.equal(model.state_dict()[key], value)
    assert model.hparams.class_names == CLASSES and model.hparams.num_classes == 3
    assert model.hparams.optimizer == SGD and model.hparams.scheduler == STEP
    x = torch.rand(2, *SHAPE)
    expected = net()(x)
    assert torch.allclose(model(x), expected)


def test_load_classifier_says_when_the_weights_do_not_fit_the_config(tmp_path):
    ckpt = checkpoint()
    ckpt[KEY]["config"]["model"]["hidden"] = [6]
    path = saved(tmp_path, ckpt)
    with pytest.raises(CheckpointError) as err:
        load_classifier(path)
    message = str(err.value)
    # the first line of torch's error (the next ones list every mismatched tensor)
    assert message == (
        f"{path}: its weights do not fit the model its config describes (Error(s) in loading "
        f"state_dict for ImageClassifier:)."
    )


def test_load_classifier_names_the_file_when_the_model_config_does_not_fit(tmp_path):
    ckpt = checkpoint()
    ckpt[KEY]["config"]["model"]["depth_of_field"] = 3  # plain data, but no MLP argument
    path = saved(tmp_path, ckpt)
    with pytest.raises(CheckpointError) as err:
        load_classifier(path)
    assert str(err.value).startswith(f"{path}: its stored model config does not fit ")


# -- resuming ----------------------------------------------------------------------------


def test_class_of_is_the_last_part_of_the_target():
    assert _class_of({"_target_": "torch.optim.SGD", "lr": 1}) == "SGD"
    assert _class_of({"_target_": "SGD"}) == "SGD"
    assert _class_of({"lr": 1}) is None
    assert _class_of({"_target_": 3}) is None
    assert _class_of(None) is None and _class_of("torch.optim.SGD") is None


def test_check_compatible_returns_the_run_info_of_a_matching_checkpoint(tmp_path):
    ckpt = checkpoint()
    ckpt[KEY]["elapsed_s"] = 12.5
    path = saved(tmp_path, ckpt)
    info = check_compatible(path, net(), "mnist", dict(SGD, lr=0.5), None)
    assert info == ckpt[KEY]
    # the scheduler's class is compared, its arguments are not
    ckpt[KEY]["config"]["scheduler"] = dict(STEP)
    path = saved(tmp_path, ckpt)
    assert check_compatible(path, net(), "mnist", SGD, dict(STEP, gamma=0.5)) == ckpt[KEY]


@pytest.mark.parametrize(
    "stored,now,group,before,after",
    [
        (SGD, ADAM, "optimizer", "SGD", "Adam"),
        (None, STEP, "scheduler", "none", "StepLR"),
        (STEP, None, "scheduler", "StepLR", "none"),
    ],
)
def test_check_compatible_refuses_another_optimizer_or_scheduler(
    tmp_path, stored, now, group, before, after
):
    ckpt = checkpoint()
    ckpt[KEY]["config"][group] = stored
    path = saved(tmp_path, ckpt)
    optimizer, scheduler = (now, None) if group == "optimizer" else (SGD, now)
    with pytest.raises(CheckpointError) as err:
        check_compatible(path, net(), "mnist", optimizer, scheduler)
    assert str(err.value) == (
        f"{path} was trained with {group} {before} and cannot resume with {after}: its saved "
        f"{group} state fits only its own. Resume with the {group}= of that run, or drop "
        f"ckpt_path to start afresh."
    )


@pytest.mark.parametrize("data,hidden", [("cifar10", (5,)), ("mnist", (6,))])
def test_check_compatible_refuses_another_dataset_or_model_shape(tmp_path, data, hidden):
    path = saved(tmp_path, checkpoint())
    other = net(hidden)
    with pytest.raises(CheckpointError) as err:
        check_compatible(path, other, data, SGD, None)
    assert str(err.value) == (
        f"{path} belongs to another setup (MLP on mnist) and cannot resume this run "
        f"({other.title} on {data}). Resume with the model= and data= of that run, or drop "
        f"ckpt_path to start afresh."
    )


def test_check_compatible_names_a_net_without_a_title_by_its_class(tmp_path):
    path = saved(tmp_path, checkpoint())
    with pytest.raises(CheckpointError, match=r"cannot resume this run \(Linear on mnist\)"):
        check_compatible(path, torch.nn.Linear(12, 3), "mnist", SGD, None)


def test_check_compatible_compares_only_the_nets_weights(tmp_path):
    ckpt = checkpoint()
    ckpt["state_dict"]["train_extra"] = torch.zeros(4)  # not under net.: not compared
    path = saved(tmp_path, ckpt)
    assert check_compatible(path, net(), "mnist", SGD, None)["classes"] == CLASSES


@pytest.mark.parametrize(
    "value,expected",
    [
        (12.5, 12.5),
        (0.5, 0.5),
        (7, 7.0),
        (0, 0.0),
        (999_999_999.0, 999_999_999.0),
        (1e9, 0.0),
        (-0.5, 0.0),
        (True, 0.0),
        ("12", 0.0),
        (None, 0.0),
    ],
)
def test_elapsed_before_is_the_stored_time_when_it_is_plausible(value, expected):
    got = elapsed_before({"elapsed_s": value})
    assert got == expected and type(got) is float


def test_elapsed_before_without_a_stored_time_is_zero():
    assert elapsed_before({}) == 0.0
