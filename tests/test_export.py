"""``scripts/export.py``: a checkpoint as a TorchScript or ONNX file that carries its
normalisation and class names and gives the checkpoint's probabilities on dataset images.

The expected probabilities are computed here from the checkpoint's net and the normalisation
written out by hand. The checkpoint's stored normalisation is changed first (to values no
dataset spec has), so an export that took mean/std from anywhere else would be caught.
"""

from __future__ import annotations

import json

import pytest
import torch

from cnnlab.checkpoint import KEY, load_classifier
from cnnlab.data.specs import get_spec
from cnnlab.errors import CnnlabError, DiskFull
from cnnlab.export import export

from .conftest import one_line_error, run_script, tiny_run

MEAN, STD = (0.25,), (0.4,)  # what the test writes into the checkpoint (MNIST's: 0.1307, 0.3081)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A trained LeNet-5 checkpoint with a changed stored normalisation, and test images."""
    tmp = tmp_path_factory.mktemp("export")
    cfg, _ = tiny_run(tmp, "trainer.max_epochs=1", "logger=none")
    ckpt = torch.load(tmp / "run" / "checkpoints" / "best.ckpt", weights_only=True)
    ckpt[KEY]["normalization"] = {"mean": list(MEAN), "std": list(STD)}
    path = tmp / "run" / "checkpoints" / "renormalised.ckpt"
    torch.save(ckpt, path)
    images, _ = get_spec("mnist").read(tmp / "data", train=False)
    return path, images[:16]


def _expected(path, images, mean=MEAN, std=STD):
    model, info = load_classifier(path)
    x = (images.double() / 255 - mean[0]) / std[0]  # by hand: one channel
    with torch.no_grad():
        return model.net(x.float()).softmax(dim=1).double(), info


def _export(*args: str, cwd=None):
    return run_script("scripts/export.py", *args, cwd=cwd)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_torchscript_gives_the_checkpoints_probabilities(checkpoint):
    path, images = checkpoint
    expected, info = _expected(path, images)
    proc = _export(f"ckpt_path={path}", "format=torchscript")
    assert proc.returncode == 0, proc.stderr[-3000:]
    exported = path.parent.parent / "export" / "renormalised.pt"  # the default place
    extra = {"cnnlab.json": ""}
    module = torch.jit.load(str(exported), _extra_files=extra)
    with torch.no_grad():
        probs = module(images).double()  # uint8 straight from the dataset
    torch.testing.assert_close(probs, expected, atol=1e-4, rtol=0)
    # the check can fail: the spec's normalisation gives other probabilities
    spec_probs, _ = _expected(path, images, get_spec("mnist").mean, get_spec("mnist").std)
    assert (spec_probs - expected).abs().max() > 1e-3
    assert list(module.classes) == info["classes"]
    meta = json.loads(extra["cnnlab.json"])
    assert meta["classes"] == info["classes"] and meta["input_shape"] == [1, 28, 28]
    assert meta["mean"] == pytest.approx(MEAN) and meta["std"] == pytest.approx(STD)
    assert "uint8" in meta["input"] and "probabilities" in meta["output"]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_torchscript_refuses_floats_and_other_sizes_as_the_onnx_file_does(checkpoint, tmp_path):
    path, images = checkpoint
    out = tmp_path / "model.pt"
    proc = _export(f"ckpt_path={path}", "format=torchscript", f"out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    module = torch.jit.load(str(out))
    with pytest.raises(Exception, match=r"expected uint8 images .*values 0-255, not another dtype"):
        module(images.float() / 255)  # floats in [0, 1]: once answered, about 8% right
    with pytest.raises(Exception, match=r"of shape \(N, 1, 28, 28\), got \[16, 1, 32, 32\]"):
        module(torch.nn.functional.pad(images, (2, 2, 2, 2)))
    with pytest.raises(Exception, match=r"got \[1, 28, 28\]"):
        module(images[0])  # one image without its batch dimension
    assert module(images[:3]).shape == (3, 10)  # any batch size


def test_onnx_gives_the_checkpoints_probabilities(checkpoint, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    for package in ("onnx", "onnxscript"):
        pytest.importorskip(package, reason="the export extra is not installed")
    path, images = checkpoint
    expected, info = _expected(path, images)
    proc = _export(f"ckpt_path={path}", "format=onnx", f"out={tmp_path / 'model.onnx'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    (inp,) = session.get_inputs()
    assert inp.type == "tensor(uint8)"
    (probs,) = session.run(None, {inp.name: images.numpy()})  # a batch of 16: dynamic
    torch.testing.assert_close(torch.from_numpy(probs).double(), expected, atol=1e-4, rtol=0)
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["classes"]) == info["classes"]
    assert json.loads(meta["mean"]) == pytest.approx(MEAN)
    assert json.loads(meta["std"]) == pytest.approx(STD)


@pytest.mark.parametrize(
    "args,pattern",
    [
        (["ckpt_path=missing.ckpt", "format=onnx"], r"ckpt_path='missing.ckpt' does not exist"),
        (["ckpt_path={ckpt}", "format=tflite"], r"format='tflite' is not one of torchscript, onnx"),
        (["format=onnx"], r"Missing ckpt_path=\.\.\."),
    ],
)
def test_bad_input_gets_one_line(args, pattern, checkpoint, tmp_path):
    path, _ = checkpoint
    proc = _export(*(a.format(ckpt=path) for a in args), cwd=tmp_path)
    one_line_error(proc, pattern)
    assert not list(tmp_path.iterdir())  # nothing written


def test_out_naming_the_checkpoint_is_refused_and_the_checkpoint_kept(checkpoint, tmp_path):
    path, _ = checkpoint
    before = path.read_bytes()
    link = tmp_path / "same.ckpt"
    link.symlink_to(path)  # the same file under another name: compared as files, not strings
    for out in (path, link):
        proc = _export(f"ckpt_path={path}", "format=torchscript", f"out={out}", "overwrite=true")
        one_line_error(proc, r"is the checkpoint being exported: writing there would destroy it")
    assert path.read_bytes() == before


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_an_existing_file_is_kept_unless_overwrite_is_true(checkpoint, tmp_path):
    path, _ = checkpoint
    out = tmp_path / "notes.pt"
    out.write_text("someone's notes\n")
    with pytest.raises(CnnlabError, match=r"exists already and is kept.*overwrite=true"):
        export(path, "torchscript", out)
    assert out.read_text() == "someone's notes\n" and _others(tmp_path) == ["notes.pt"]
    assert export(path, "torchscript", out, overwrite=True) == out
    assert list(torch.jit.load(str(out)).classes) == load_classifier(path)[1]["classes"]
    assert _others(tmp_path) == ["notes.pt"]  # written beside it under a temp name, renamed


def _others(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_full_disk_leaves_no_fragment_and_a_read_only_one_is_refused(checkpoint, small_disk):
    path, _ = checkpoint
    full = small_disk("64k")  # a LeNet-5 model file is about 250 kB
    with pytest.raises(DiskFull, match=r"^disk full: could not write .*model.pt \(0 MB free"):
        export(path, "torchscript", full / "model.pt")  # torch.jit.save to a path: abort()
    assert _others(full) == []
    read_only = small_disk("1m", read_only=True)
    proc = _export(f"ckpt_path={path}", "format=torchscript", f"out={read_only}/model.pt")
    one_line_error(proc, r"cannot write to .*\(Read-only file system\)\. Export elsewhere")
