"""The in-memory fast path: sampler, dataset views, splits, normalisation."""

from __future__ import annotations

import torch

from cnnlab.data import ImageDataModule
from cnnlab.data.memory import BatchIndexSampler, TensorImageDataset
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
    from cnnlab.data.synthetic import write_mnist_like

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
