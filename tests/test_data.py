"""The in-memory fast path: sampler, dataset views, splits, normalisation."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data import ImageDataModule
from cnnlab.data.memory import BatchIndexSampler, TensorImageDataset
from cnnlab.data.specs import SPECS as SPECS_
from cnnlab.data.specs import get_spec


def test_sampler_visits_every_position_once_per_epoch_in_a_seeded_order():
    s = BatchIndexSampler(1000, 128, shuffle=True, seed=3)
    batches = list(s)
    assert len(batches) == len(s) == 8 and len(batches[-1]) == 1000 - 7 * 128
    assert sorted(torch.cat(batches).tolist()) == list(range(1000))
    assert torch.equal(torch.cat(list(s)), torch.cat(batches))  # same epoch, same order
    s.set_epoch(1)
    assert not torch.equal(torch.cat(list(s)), torch.cat(batches))  # new epoch, new order
    other_seed = BatchIndexSampler(1000, 128, shuffle=True, seed=4)
    assert not torch.equal(torch.cat(list(other_seed)), torch.cat(batches))


def test_sampler_shards_evenly_across_ranks():
    shards = [
        list(BatchIndexSampler(1001, 100, True, seed=0, rank=r, world_size=2)) for r in (0, 1)
    ]
    a, b = (torch.cat(s) for s in shards)
    assert len(a) == len(b) == 501  # padded by wrapping around, like DistributedSampler
    assert set(a.tolist()) | set(b.tolist()) == set(range(1001))
    assert len(set(a.tolist()) & set(b.tolist())) == 1  # only the one wrap-around sample


def test_dataset_returns_uint8_batches_from_shared_storage():
    images = torch.randint(0, 256, (50, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(50)
    train = TensorImageDataset(images, labels, torch.arange(10, 50))
    val = TensorImageDataset(images, labels, torch.arange(10))
    x, y = train[torch.tensor([0, 5])]
    assert x.dtype == torch.uint8 and torch.equal(x, images[[10, 15]]) and y.tolist() == [10, 15]
    assert train.images.untyped_storage().data_ptr() == val.images.untyped_storage().data_ptr()


def test_datamodule_splits_and_normalises(tiny_mnist):
    dm = ImageDataModule(
        "mnist", str(tiny_mnist), batch_size=64, val_size=100, mirrors=[], download=False
    )
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (500, 100, 200)
    train_idx = set(dm.train_set.indices.tolist())
    assert not train_idx & set(dm.val_set.indices.tolist())
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (64, 1, 28, 28) and y.dtype == torch.long
    z = dm.normalize(x)
    expected = (x.float() / 255 - 0.1307) / 0.3081
    assert z.dtype == torch.float32 and torch.allclose(z, expected, atol=1e-5)


def test_validation_split_ignores_the_run_seed(tiny_mnist):
    def val_indices(seed):
        dm = ImageDataModule(
            "mnist", str(tiny_mnist), val_size=100, seed=seed, mirrors=[], download=False
        )
        dm.setup()
        return dm.val_set.indices.tolist()

    assert val_indices(0) == val_indices(1)


def test_cifar_images_are_read_channels_first(tiny_cifar):
    dm = ImageDataModule("cifar10", str(tiny_cifar), val_size=50, mirrors=[], download=False)
    dm.prepare_data()
    dm.setup()
    x, _ = dm.test_set[torch.arange(4)]
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.uint8
    assert dm.normalize(x).shape == (4, 3, 32, 32)


def test_mnist_size_split_is_held_once_as_uint8_and_shared_with_the_loader(tmp_path):
    from tests.support.synthetic import write_mnist_like

    write_mnist_like(tmp_path, "mnist", n_train=60000, n_test=10000)
    dm = ImageDataModule("mnist", str(tmp_path), mirrors=[], download=False, num_workers=2)
    dm.setup()
    loader = dm.train_dataloader()
    ptrs = {
        ds.images.untyped_storage().data_ptr() for ds in (dm.train_set, dm.val_set, loader.dataset)
    }
    assert len(ptrs) == 1  # one storage behind the train view, the val view and the loader
    assert dm.train_set.images.dtype == torch.uint8
    assert dm.train_set.images.untyped_storage().nbytes() == 60000 * 28 * 28  # 47 MB, no float copy
    assert loader.dataset is dm.train_set and loader.num_workers == 2  # workers fork, not copy


def test_sampler_never_yields_a_one_sample_batch():
    # 55,000 training images in batches of 3 leave one image over: it joins the last batch
    s = BatchIndexSampler(55000, 3, shuffle=True, seed=0)
    batches = list(s)
    assert len(batches) == len(s) == 18333
    assert {len(b) for b in batches[:-1]} == {3} and len(batches[-1]) == 4
    assert sorted(torch.cat(batches).tolist()) == list(range(55000))
    for n, world in ((10, 1), (21, 2), (7, 1)):  # 7 = 2 * 3 + 1; 21 over 2 ranks: 11 = 2 * 5 + 1
        for rank in range(world):
            sizes = [
                len(b)
                for b in BatchIndexSampler(n, 3 if world == 1 else 5, True, 0, False, rank, world)
            ]
            assert min(sizes) > 1 and sum(sizes) == -(-n // world), (n, world, sizes)


def test_batch_norm_trains_when_the_split_leaves_one_sample_over(tmp_path, tiny_mnist):
    from cnnlab.run import train

    from .conftest import make_cfg

    # 600 - 99 = 501 training images, batches of 100: the old last batch held one image,
    # and BatchNorm1d cannot train on one value per channel
    cfg = make_cfg(
        tmp_path,
        tiny_mnist,
        "model=mlp",
        "model.batch_norm=true",
        "data.val_size=99",
        "data.batch_size=100",
        "trainer.max_epochs=1",
        "logger=none",
        "test=false",
    )
    assert train(cfg)["status"] == "completed"


def test_a_validation_split_that_leaves_one_training_image_still_runs(tiny_mnist, tmp_path):
    # data.val_size=n-1 is allowed; the sample preview (8 images) once indexed past the split
    from cnnlab.run import train

    from .conftest import make_cfg

    n = len(get_spec("mnist").read(tiny_mnist, train=True)[1])
    metrics = train(
        make_cfg(tmp_path, tiny_mnist, f"data.val_size={n - 1}", "trainer.max_epochs=1")
    )
    assert metrics["status"] == "completed" and metrics["epochs"] == 1


# -- splits: counts, hold-outs and fold arguments, against values worked out here ----------


def _config_error(fn, *args) -> str:

    from cnnlab.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        fn(*args)
    return str(err.value)


def test_split_count_takes_a_count_or_a_fraction_of_the_split():
    from cnnlab.data.splits import split_count

    assert split_count("data.val_size", 100, 600, "x") == 100
    assert split_count("data.val_size", 1, 600, "x") == 1
    assert split_count("data.val_size", 599, 600, "x") == 599  # one left for training
    assert split_count("data.val_size", 0.1, 600, "x") == 60
    assert split_count("data.val_size", 0.2525, 600, "x") == 152  # 151.5 rounds to even
    assert split_count("data.val_size", 0.0009, 600, "x") == 1  # 0.54: never zero images
    assert split_count("data.val_size", 1e-9, 600, "x") == 1
    assert split_count("data.val_size", 0.999, 600, "x") == 599


def test_a_split_count_that_leaves_nothing_or_takes_nothing_is_refused():
    from cnnlab.data.splits import split_count

    for value in (0, 600, 601, -5, 0.0, 1.0, 1.5, True, "100", None, 0.9995):
        message = _config_error(split_count, "data.val_size", value, 600, "MNIST's training split")
        assert message == (
            f"data.val_size={value!r} must be a count in [1, 600) or a fraction in (0, 1): "
            f"MNIST's training split has 600 images and at least one must remain for training."
        )


def test_holdout_draws_count_positions_by_the_seed_and_keeps_the_rest():
    from cnnlab.data.splits import holdout

    kept, held = holdout(10, 3, seed=7)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(7))
    assert held.tolist() == perm[:3].tolist() and kept.tolist() == perm[3:].tolist()
    assert sorted(kept.tolist() + held.tolist()) == list(range(10))
    again, held_again = holdout(10, 3, seed=7)
    assert torch.equal(held_again, held) and torch.equal(again, kept)
    assert not torch.equal(holdout(10, 3, seed=8)[1], held)


def test_fold_arguments_both_null_or_sensible_pass():
    from cnnlab.data.splits import check_folds

    for folds, fold, n in ((None, None, None), (2, 0, 2), (2, 1, None), (5, 4, 600), (10, 9, 10)):
        check_folds(folds, fold, n, "x")


@pytest.mark.parametrize(
    "folds,fold,n,message",
    [
        (None, 1, None, "data.fold=1 needs data.folds=K, the number of folds (e.g. data.folds=5 data.fold=1)."),
        (None, 0, None, "data.fold=0 needs data.folds=K"),
        (1, 0, None, "data.folds=1 must be an integer >= 2 (e.g. data.folds=5), or null for one validation split of data.val_size images."),
        (True, 0, None, "data.folds=True must be an integer >= 2"),
        (2.0, 0, None, "data.folds=2.0 must be an integer >= 2"),
        (3, None, None, "data.fold=None must be an integer in [0, 3): the fold that validates (e.g. data.fold=0; sweep=kfold runs every fold)."),
        (3, 3, None, "data.fold=3 must be an integer in [0, 3)"),
        (3, -1, None, "data.fold=-1 must be an integer in [0, 3)"),
        (3, False, None, "data.fold=False must be an integer in [0, 3)"),
        (3, 1.0, None, "data.fold=1.0 must be an integer in [0, 3)"),
        (4, 0, 3, "data.folds=4 is more folds than the split has images (3): every fold needs at least one. Use data.folds=3."),
        (9, 0, 8, "Use data.folds=5."),
        (3, 0, 1, "Use data.folds=2."),
    ],
)  # fmt: skip
def test_fold_arguments_that_make_no_sense_are_refused_naming_the_fix(folds, fold, n, message):
    from cnnlab.data.splits import check_folds

    got = _config_error(check_folds, folds, fold, n, "the split")
    assert got.startswith(message) or got.endswith(message), got


# -- specs: the dataset table and normalisation ---------------------------------------------


def test_an_unknown_dataset_names_the_valid_ones():
    from cnnlab.data.specs import get_spec as spec_of
    from cnnlab.errors import DataError

    with pytest.raises(DataError) as err:
        spec_of("imagenet")
    assert str(err.value) == (
        f"Unknown dataset 'imagenet'. Valid: {', '.join(sorted(SPECS_))} (choose one "
        "with data=<name>, or data=folder data.root=PATH for your own images)."
    )


def test_a_spec_reads_its_files_from_its_folder_in_data_dir(tiny_mnist):
    spec = get_spec("mnist")
    assert spec.target_dir(str(tiny_mnist)) == tiny_mnist / "MNIST" / "raw"
    assert spec.files == (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    x, y = spec.read(tiny_mnist, train=False)
    assert x.shape == (200, 1, 28, 28) and y.shape == (200,)
    assert len(spec.read(tiny_mnist, train=True)[0]) == 600


def test_the_specs_facts():
    # the sizes of the official splits and which datasets a mirror image keeps the label of
    facts = {n: (s.train_size, s.test_size, s.hflip_keeps_label) for n, s in SPECS_.items()}
    assert facts == {
        "mnist": (60000, 10000, False),
        "fashion_mnist": (60000, 10000, True),
        "cifar10": (50000, 10000, True),
        "svhn": (73257, 26032, False),
    }
    assert {n: s.title for n, s in SPECS_.items()} == {
        "mnist": "MNIST",
        "fashion_mnist": "Fashion-MNIST",
        "cifar10": "CIFAR-10",
        "svhn": "SVHN",
    }
    assert get_spec("fashion_mnist").debian_package == "dataset-fashion-mnist"
    assert get_spec("mnist").debian_package is None


def test_normalization_stats_per_mode():
    from cnnlab.data.specs import normalization_stats

    stats = ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    assert normalization_stats("dataset", stats, 3) == stats
    assert normalization_stats("dataset", None, 3) == (None, None)
    assert normalization_stats("half", stats, 3) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert normalization_stats("half", None, 1) == ((0.5,), (0.5,))
    assert normalization_stats("none", stats, 3) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert normalization_stats("none", None, 1) == ((0.0,), (1.0,))


def test_an_unknown_normalization_lists_the_modes():
    from cnnlab.data.specs import normalization_stats

    message = _config_error(normalization_stats, "imagenet", None, 3)
    assert message == (
        "Unknown data.normalize='imagenet'. Valid: dataset (the dataset's own mean and std); "
        "half (mean 0.5, std 0.5 per channel: inputs in [-1, 1], as in the course's deck 001); "
        "none (mean 0, std 1: inputs stay in [0, 1]). E.g. data.normalize=half."
    )


def test_normalize_is_x_over_255_minus_mean_over_std_per_channel():
    from cnnlab.data.specs import normalization_constants, normalize

    x = torch.tensor([0, 51, 255, 128], dtype=torch.uint8).view(1, 1, 2, 2).repeat(2, 3, 1, 1)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.25, 2.0)
    got = normalize(x, mean, std)
    for c in range(3):
        expected = (x[:, c].double() / 255 - mean[c]) / std[c]
        assert torch.allclose(got[:, c].double(), expected, atol=1e-6)
    assert got.dtype == torch.float32 and got.shape == x.shape
    scale, neg_shift = normalization_constants(mean, std)
    assert scale.shape == neg_shift.shape == (1, 3, 1, 1)
    assert torch.allclose(x.float() * scale + neg_shift, got)
    scale.mul_(0)  # a copy: the cached constants stay untouched
    assert torch.allclose(normalize(x, mean, std), got)


# -- memory: dataset views, the sampler and the resumable loader --------------------------


def test_a_dataset_transform_gets_hwc_images_and_their_dataset_indices():
    images = torch.arange(6 * 3 * 2 * 2, dtype=torch.uint8).view(6, 3, 2, 2)
    seen = []

    def transform(hwc, idx):
        seen.append((hwc.copy(), idx.tolist()))
        return 255 - hwc

    ds = TensorImageDataset(images, torch.arange(6) * 10, torch.tensor([5, 3, 1]), transform)
    x, y = ds[torch.tensor([0, 2])]
    assert seen[0][1] == [5, 1]
    assert (seen[0][0] == images[[5, 1]].permute(0, 2, 3, 1).numpy()).all()
    assert torch.equal(x, 255 - images[[5, 1]]) and x.is_contiguous()
    assert y.tolist() == [50, 10] and len(ds) == 3
    assert len(TensorImageDataset(images, torch.arange(6))) == 6


def test_a_sampler_without_seed_or_rank_is_seed_0_rank_0_of_1():
    plain = BatchIndexSampler(50, 7, shuffle=True)
    explicit = BatchIndexSampler(50, 7, shuffle=True, seed=0, rank=0, world_size=1)
    assert [b.tolist() for b in plain] == [b.tolist() for b in explicit]


def test_a_large_split_is_sharded_without_repeating_it_more_than_needed():
    # 1,000,001 positions over 2 ranks: one wrap-around position, not a copy per position
    sampler = BatchIndexSampler(1_000_001, 100_000, shuffle=True, rank=1, world_size=2)
    positions = torch.cat(list(sampler))
    assert len(positions) == 500_001 and len(sampler) == 5  # the lone last position joins batch 5


def test_a_loader_that_has_not_run_is_at_the_start_of_its_epoch():
    from cnnlab.data.memory import ResumableLoader

    data = TensorImageDataset(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.zeros(10))
    loader = ResumableLoader(data, BatchIndexSampler(10, 3, shuffle=False), batch_size=None)
    assert loader.state_dict() == {"epoch": 0, "batches_done": 0}


def test_the_dataset_holds_only_uint8_nchw_images():
    labels = torch.zeros(4)
    for images in (torch.zeros(4, 1, 2, 2), torch.zeros(4, 2, 2, dtype=torch.uint8)):
        with pytest.raises(AssertionError, match="^expects uint8 NCHW images$"):
            TensorImageDataset(images, labels)


def test_an_unshuffled_sampler_yields_positions_in_order():
    s = BatchIndexSampler(7, 3, shuffle=False, seed=5)
    assert [b.tolist() for b in s] == [[0, 1, 2], [3, 4, 5, 6]]  # no batch of one
    s.set_epoch(3)
    assert [b.tolist() for b in s] == [[0, 1, 2], [3, 4, 5, 6]]


def test_a_shuffled_sampler_order_depends_on_seed_and_epoch_only():
    def order(seed, epoch):
        s = BatchIndexSampler(50, 50, shuffle=True, seed=seed)
        s.set_epoch(epoch)
        return next(iter(s)).tolist()

    assert order(0, 1) != order(1, 0)  # seeds and epochs never stand in for each other
    assert order(2, 3) == order(2, 3)
    g = torch.Generator().manual_seed(2 * 100_003 + 3)
    assert order(2, 3) == torch.randperm(50, generator=g).tolist()


@pytest.mark.parametrize(
    "n,batch,drop_last,sizes",
    [
        (10, 3, False, [3, 3, 4]),  # 10 = 3 + 3 + 3 + 1: the lone sample joins the last batch
        (10, 3, True, [3, 3, 3]),
        (9, 3, False, [3, 3, 3]),
        (9, 3, True, [3, 3, 3]),
        (11, 3, False, [3, 3, 3, 2]),
        (11, 3, True, [3, 3, 3]),
        (1, 3, False, [1]),  # a split of one sample is one batch
        (2, 1, False, [1, 1]),  # batch size 1 is the user's choice
        (5, 8, False, [5]),
    ],
)
def test_sampler_batch_sizes(n, batch, drop_last, sizes):
    s = BatchIndexSampler(n, batch, shuffle=False, drop_last=drop_last)
    assert [len(b) for b in s] == sizes and len(s) == len(sizes)
    assert torch.cat(list(s)).tolist() == list(range(sum(sizes)))


def test_sharded_sampler_deals_positions_round_robin_and_wraps_around():
    shards = [
        [b.tolist() for b in BatchIndexSampler(5, 2, False, rank=r, world_size=2)] for r in (0, 1)
    ]
    # 5 positions over 2 ranks: 3 each, the 6th wraps around to position 0
    assert shards == [[[0, 2, 4]], [[1, 3, 0]]]
    three = [list(BatchIndexSampler(7, 10, False, rank=r, world_size=3))[0] for r in range(3)]
    assert [t.tolist() for t in three] == [[0, 3, 6], [1, 4, 0], [2, 5, 1]]
    s = BatchIndexSampler(5, 2, False, rank=1, world_size=2, drop_last=True)
    assert [b.tolist() for b in s] == [[1, 3]] and len(s) == 1


def test_a_resumed_loader_skips_the_batches_already_done_once():
    from cnnlab.data.memory import ResumableLoader

    images = torch.zeros(10, 1, 1, 1, dtype=torch.uint8)
    ds = TensorImageDataset(images, torch.arange(10))
    sampler = BatchIndexSampler(10, 2, shuffle=True, seed=1)
    loader = ResumableLoader(ds, sampler, batch_size=None)
    full = [y.tolist() for _, y in loader]
    assert len(full) == 5 and loader.batches_done == 5
    assert loader.state_dict() == {"epoch": 0, "batches_done": 5}
    it = iter(loader)
    next(it), next(it)
    state = loader.state_dict()
    assert state == {"epoch": 0, "batches_done": 2}
    resumed = ResumableLoader(ds, BatchIndexSampler(10, 2, shuffle=True, seed=1), batch_size=None)
    resumed.load_state_dict(state)
    assert resumed.batches_done == 2
    assert [y.tolist() for _, y in resumed] == full[2:]
    assert resumed.batches_done == 5
    assert [y.tolist() for _, y in resumed] == full  # the next epoch is whole again
    # a checkpoint taken at an epoch's end resumes at the start of the next epoch
    end = ResumableLoader(ds, BatchIndexSampler(10, 2, shuffle=True, seed=1), batch_size=None)
    end.load_state_dict({"epoch": 0, "batches_done": 5})
    assert end.sampler.start == 0 and end.batches_done == 0
    assert len([b for b in end]) == 5
    end.load_state_dict({"epoch": 0, "batches_done": 4})
    assert end.sampler.start == 4 and len([b for b in end]) == 1
    end.load_state_dict({})
    assert end.sampler.start == 0
    sampler.set_epoch(2)
    assert loader.state_dict()["epoch"] == 2


# -- ImageDataModule at unit level: arguments, loaders and batch transfer -----------------


def _dm(data_dir="data", **kwargs) -> ImageDataModule:
    kwargs = {"mirrors": [], "download": False, "val_size": 100, **kwargs}
    return ImageDataModule("mnist", str(data_dir), **kwargs)


@pytest.mark.parametrize("key", ["batch_size", "eval_batch_size"])
@pytest.mark.parametrize("value", [0, -3, 2.5, "64", None])
def test_batch_sizes_must_be_positive_integers(key, value):
    from cnnlab.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        _dm(**{key: value})
    assert str(err.value) == (
        f"data.{key}={value!r} must be a positive integer (e.g. data.{key}=128)."
    )


def test_the_validation_size_is_checked_against_the_datasets_training_split():
    from cnnlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^data.val_size=60000 must be a count in \[1, 60000\)"):
        _dm(val_size=60000)
    with pytest.raises(ConfigError, match=r"MNIST's training split has 60000 images"):
        _dm(val_size=0)
    assert _dm(val_size=59999).val_size == 59999
    # with folds the validation split is a fold: val_size is not used, nor checked
    dm = _dm(val_size=0, folds=3, fold=2)
    assert (dm.folds, dm.fold) == (3, 2)
    with pytest.raises(ConfigError, match=r"^data.fold=3 must be an integer in \[0, 3\)"):
        _dm(folds=3, fold=3)


def test_a_datamodule_keeps_its_arguments_and_knows_its_dataset():
    dm = ImageDataModule(
        "mnist",
        "somewhere",
        batch_size=7,
        eval_batch_size=9,
        val_size=11,
        split_seed=13,
        seed=17,
        num_workers=2,
        download=False,
        mirrors=["/m1", "/m2"],
        pin_memory=True,
        shuffle=False,
    )
    assert (dm.data_dir, dm.batch_size, dm.eval_batch_size) == ("somewhere", 7, 9)
    assert (dm.val_size, dm.split_seed, dm.seed) == (11, 13, 17)
    assert (dm.num_workers, dm.download, dm.mirrors) == (2, False, ("/m1", "/m2"))
    assert (dm.pin_memory, dm.shuffle, dm.resident) == (True, False, False)
    assert dm.aug == {} and dm.batch_mix is None and dm.batch_aug is None
    assert dm.input_shape == (1, 28, 28) and dm.num_classes == 10
    assert dm.classes == tuple("0123456789")
    assert (dm.mean, dm.std) == ((0.1307,), (0.3081,))
    assert _dm(normalize="half").mean == (0.5,) and _dm(normalize="none").std == (1.0,)
    defaults = ImageDataModule("mnist")
    assert (defaults.batch_size, defaults.eval_batch_size, defaults.val_size) == (128, 1000, 5000)
    assert (defaults.split_seed, defaults.seed, defaults.download) == (0, 0, True)
    assert defaults.mirrors == ("/usr/share/datasets",) and defaults.data_dir == "data"
    assert (defaults.shuffle, defaults.pin_memory, defaults.num_workers) == (True, False, None)


def test_the_aug_config_is_copied_and_mixing_is_set_up_for_every_class():
    aug = {"mixup_alpha": 0.4}
    dm = _dm(aug=aug, seed=5)
    aug["mixup_alpha"] = 0.0
    assert dm.aug == {"mixup_alpha": 0.4}
    assert dm.batch_mix.mixup_alpha == 0.4 and dm.batch_mix.num_classes == 10
    assert dm.batch_mix.seed == 5


def test_the_resident_path_refuses_augmentation_it_cannot_do_at_once():
    from cnnlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"got aug.elastic_p=0.5"):
        _dm(resident=True, aug={"elastic_p": 0.5})
    assert _dm(resident=False, aug={"elastic_p": 0.5}).aug == {"elastic_p": 0.5}
    assert _dm(resident=True, aug={"hflip": 0.5}).resident is True


def test_prepare_data_installs_the_dataset_once(monkeypatch):
    from cnnlab.data import datamodule as dm_module

    calls = []
    monkeypatch.setattr(dm_module, "ensure_dataset", lambda *a: calls.append(a))
    dm = _dm("/my/data", mirrors=["/mirror"], download=True)
    dm.prepare_data()
    dm.prepare_data()
    assert calls == [("mnist", "/my/data", ("/mirror",), True)]


def test_setup_holds_the_splits_once_and_logs_their_sizes(tiny_mnist, caplog):
    import logging

    dm = _dm(tiny_mnist, val_size=100, split_seed=3)
    with caplog.at_level(logging.INFO, logger="cnnlab.data.datamodule"):
        dm.setup("fit")
    assert caplog.messages == [
        "MNIST: 500 train / 100 val / 200 test images held in memory as uint8 (1 MB)"
    ]
    train_set = dm.train_set
    dm.setup("test")
    assert dm.train_set is train_set
    kept, held = __import__("cnnlab.data.splits", fromlist=["holdout"]).holdout(600, 100, 3)
    assert torch.equal(dm.val_set.indices, held) and torch.equal(dm.train_set.indices, kept)
    x, y = get_spec("mnist").read(tiny_mnist, train=True)
    assert torch.equal(dm.val_set.images, x) and torch.equal(dm.val_set.labels, y)
    assert dm.transform is None and dm.train_set.transform is None
    folds = _dm(tiny_mnist, folds=3, fold=1)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cnnlab.data.datamodule"):
        folds.setup()
    assert caplog.messages == [
        "MNIST: 400 train / 200 val (fold 1 of 3) / 200 test images held in memory as uint8 (1 MB)"
    ]


def test_a_fraction_val_size_is_a_share_of_the_files_training_split(tiny_mnist):
    dm = _dm(tiny_mnist, val_size=0.25)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set)) == (450, 150)


def test_the_resident_path_holds_the_splits_on_the_device_with_batch_augmentation(tiny_mnist):
    dm = _dm(tiny_mnist, resident=True, aug={"hflip": 0.5}, seed=4)
    dm.setup()
    assert dm.transform is None and dm.batch_aug.flip_p == 0.5 and dm.batch_aug.seed == 4
    assert dm.train_set.images.device.type == "cpu"
    plain = _dm(tiny_mnist, resident=True)
    plain.setup()
    assert plain.batch_aug is None


def test_per_sample_augmentation_is_built_only_when_a_transform_is_on(tiny_mnist):
    off = _dm(tiny_mnist, aug={"rotate_limit": 10})  # strength without its probability
    off.setup()
    assert off.transform is None
    on = _dm(tiny_mnist, aug={"hflip": 0.5})
    on.setup()
    assert callable(on.transform) and on.train_set.transform is on.transform
    assert on.val_set.transform is None and on.test_set.transform is None


def test_loader_workers(monkeypatch, tiny_mnist):
    from cnnlab.data import datamodule as dm_module

    assert _dm(num_workers=3)._workers() == 3
    assert _dm(num_workers=0)._workers() == 0
    dm = _dm(tiny_mnist)
    dm.setup()
    assert dm._workers() == 0  # in-memory batches need no workers
    dm.transform = lambda hwc, idx: hwc
    for cpus, expected in ((2, 2), (4, 4), (16, 4), (None, 1)):
        monkeypatch.setattr(dm_module.os, "cpu_count", lambda c=cpus: c)
        assert dm._workers() == expected


def test_training_and_evaluation_loaders(tiny_mnist):
    from types import SimpleNamespace

    from cnnlab.data.memory import ResumableLoader

    dm = _dm(tiny_mnist, batch_size=32, eval_batch_size=64, seed=9, num_workers=0)
    dm.setup()
    train, val, test = dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()
    assert isinstance(train, ResumableLoader)
    assert not isinstance(val, ResumableLoader) and not isinstance(test, ResumableLoader)
    assert train.dataset is dm.train_set and val.dataset is dm.val_set
    assert test.dataset is dm.test_set
    s = train.sampler
    assert (s.n, s.batch_size, s.shuffle, s.seed, s.rank, s.world_size) == (500, 32, True, 9, 0, 1)
    assert (val.sampler.batch_size, val.sampler.shuffle, val.sampler.n) == (64, False, 100)
    assert (test.sampler.batch_size, test.sampler.shuffle, test.sampler.n) == (64, False, 200)
    assert train.batch_size is None and train.generator.initial_seed() == 9
    assert val.generator.initial_seed() == 9
    assert train.num_workers == 0 and not train.persistent_workers and not train.pin_memory
    # the same batches each epoch with shuffle=false; a rank's share under DDP
    fixed = _dm(tiny_mnist, shuffle=False, pin_memory=True)
    fixed.setup()
    assert fixed.train_dataloader().sampler.shuffle is False
    assert fixed.train_dataloader().pin_memory is True
    fixed.trainer = SimpleNamespace(global_rank=1, world_size=4)
    s = fixed.train_dataloader().sampler
    assert (s.rank, s.world_size) == (1, 4)
    assert (fixed.val_dataloader().sampler.rank, fixed.val_dataloader().sampler.world_size) == (
        1,
        4,
    )


def test_workers_serve_only_the_training_loader_and_stay_between_epochs(tiny_mnist):
    dm = _dm(tiny_mnist, num_workers=2)
    dm.setup()
    train, val = dm.train_dataloader(), dm.val_dataloader()
    assert train.num_workers == 2 and train.persistent_workers
    assert val.num_workers == 0 and not val.persistent_workers


def test_a_batch_is_normalised_after_transfer_and_mixed_only_in_training(tiny_mnist):
    from types import SimpleNamespace

    dm = _dm(tiny_mnist, aug={"mixup_alpha": 0.4}, seed=2)
    x = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    expected = (x.float() / 255 - 0.1307) / 0.3081
    out = dm.on_after_batch_transfer((x, y), 0)  # no trainer: normalised only
    assert len(out) == 2 and torch.allclose(out[0], expected, atol=1e-5) and out[1] is y
    progress = SimpleNamespace(current=SimpleNamespace(ready=7))
    trainer = SimpleNamespace(
        training=False,
        current_epoch=3,
        global_rank=1,
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)),
    )
    dm.trainer = trainer
    out = dm.on_after_batch_transfer((x, y), 0)
    assert len(out) == 2 and torch.allclose(out[0], expected, atol=1e-5)
    trainer.training = True
    mixed, soft, labels = dm.on_after_batch_transfer((x, y), 0)
    want_x, want_soft = dm.batch_mix(expected, y, (3, 7, 1))
    assert torch.allclose(mixed, want_x, atol=1e-5) and torch.allclose(soft, want_soft)
    assert labels is y and not torch.allclose(mixed, expected)
    plain = _dm(tiny_mnist)
    plain.trainer = trainer
    out = plain.on_after_batch_transfer((x, y), 0)
    assert len(out) == 2 and torch.allclose(out[0], expected, atol=1e-5)


def test_batch_augmentation_on_the_device_comes_before_normalisation(tiny_mnist):
    from types import SimpleNamespace

    from cnnlab.data.batch_augment import BatchAugmentation

    dm = _dm(tiny_mnist, resident=True, aug={"hflip": 1.0})
    dm.batch_aug = BatchAugmentation(0, 1.0)
    progress = SimpleNamespace(current=SimpleNamespace(ready=0))
    dm.trainer = SimpleNamespace(
        training=True,
        current_epoch=0,
        global_rank=0,
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)),
    )
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    y = torch.arange(4)
    out_x, out_y = dm.on_after_batch_transfer((x, y), 0)
    assert torch.allclose(out_x, (x.flip(-1).float() / 255 - 0.1307) / 0.3081, atol=1e-5)
    assert out_y is y


def test_batch_augmentation_draws_by_epoch_batch_and_rank(tiny_mnist):
    from types import SimpleNamespace

    from cnnlab.data.batch_augment import BatchAugmentation

    dm = _dm(tiny_mnist, resident=True, aug={"hflip": 0.5})
    dm.batch_aug = BatchAugmentation(2, 0.5, seed=3)
    progress = SimpleNamespace(current=SimpleNamespace(ready=5))
    dm.trainer = SimpleNamespace(
        training=True,
        current_epoch=2,
        global_rank=1,
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)),
    )
    x = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    out, _ = dm.on_after_batch_transfer((x, torch.arange(16)), 0)
    expected = dm.normalize(dm.batch_aug(x, (2, 5, 1)))
    assert torch.allclose(out, expected)
    assert not torch.allclose(out, dm.normalize(dm.batch_aug(x, ())))
