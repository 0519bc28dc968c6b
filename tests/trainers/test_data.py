"""Data set loaders: the authors' long-tailed profiles, first-n_k CIFAR selection, disjoint splits, image
decoding of folder and list data sets, and the user errors that name what to fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.trainers.fake_data import (
    class_level,
    write_fake_cifar,
    write_fake_image_folder,
    write_fake_imagenet_lt,
    write_fake_inat2018,
    write_image,
)
from trainers.config import BUILT_IN_DATASETS, DataConfig
from trainers.data import AugmentSpec, LTDataset, load_dataset, lt_counts
from trainers.data.profiles import carve_balanced_val
from trainers.errors import CorruptImageError, UserInputError


def image_rows(images: torch.Tensor) -> set[bytes]:
    return {image.numpy().tobytes() for image in images}


def assert_class_levels(data: LTDataset) -> None:
    """Every fake image's mean pixel is its label's gray level (labels survived decoding and resizing)."""
    for split in (data.train, data.val, data.test):
        means = split.images.float().mean(dim=(1, 2, 3))
        expected = torch.tensor([class_level(int(label)) for label in split.labels], dtype=torch.float32)
        assert torch.allclose(means, expected, atol=6)


# ---------------------------------------------------------------------------------------------- profiles
def test_cifar100_if100_profiles_match_the_papers() -> None:
    wb = lt_counts(500, 100, 100, "floor")
    ewb = lt_counts(480, 100, 100, "round")
    assert (wb[0], wb[-1], sum(wb)) == (500, 5, 10_847)
    assert (ewb[0], ewb[-1], sum(ewb)) == (480, 5, 10_457)


@pytest.mark.parametrize("imbalance", [100, 50, 10])
@pytest.mark.parametrize(("n_max", "classes", "rounding"), [(500, 100, "floor"), (480, 100, "round"),
                                                             (5000, 10, "floor"), (4980, 10, "round")])
def test_profiles_fall_monotonically_from_n_max_to_n_max_over_if(imbalance: int, n_max: int, classes: int,
                                                                 rounding: str) -> None:
    counts = lt_counts(n_max, imbalance, classes, rounding)
    assert counts[0] == n_max
    assert all(head >= tail for head, tail in zip(counts, counts[1:], strict=False))
    assert abs(counts[-1] - n_max / imbalance) <= 1


def test_cifar10_if100_wb_profile_is_the_standard_one() -> None:
    counts = lt_counts(5000, 100, 10, "floor")
    assert (counts[0], counts[-1], sum(counts)) == (5000, 50, 12_406)


def test_imbalance_leaving_an_empty_class_is_refused() -> None:
    with pytest.raises(UserInputError, match="at most 100"):
        lt_counts(100, 101, 10, "floor")
    with pytest.raises(UserInputError, match="below 200"):
        lt_counts(100, 200, 10, "round")
    assert lt_counts(100, 199, 10, "round")[-1] == 1
    assert lt_counts(100, 100, 10, "floor")[-1] == 1
    with pytest.raises(UserInputError, match="imbalance factor 1000"):
        load_dataset(DataConfig(imbalance_factor=1000))


def test_carved_val_is_balanced_disjoint_seeded_and_leaves_every_class_trained() -> None:
    labels = torch.tensor([0] * 200 + [1] * 12 + [2] * 4 + [3] * 1)
    train, val = carve_balanced_val(labels, 4, seed=3)
    assert torch.bincount(labels[val], minlength=4).tolist() == [20, 2, 0, 0]
    assert torch.bincount(labels[train], minlength=4).tolist() == [180, 10, 4, 1]
    assert sorted(train.tolist() + val.tolist()) == list(range(len(labels)))
    assert torch.equal(carve_balanced_val(labels, 4, seed=3)[1], val)
    assert not torch.equal(carve_balanced_val(labels, 4, seed=4)[1], val)


# ---------------------------------------------------------------------------------------------- digits-lt
def test_digits_lt_follows_the_profile_with_balanced_disjoint_val_and_test() -> None:
    data = load_dataset(DataConfig())
    assert data.class_counts == lt_counts(100, 20, 10, "round")
    assert min(data.class_counts) >= 3
    assert torch.bincount(data.val.labels).tolist() == [20] * 10
    assert torch.bincount(data.test.labels).tolist() == [50] * 10
    splits = (data.train.images, data.val.images, data.test.images)
    # load_digits holds no duplicate images, so distinct pixels mean distinct source images.
    assert len(image_rows(torch.cat(splits))) == sum(len(images) for images in splits)
    assert (data.channels, data.image_size, data.train.images.dtype) == (1, 8, torch.uint8)
    assert int(data.train.images.max()) == 255
    assert not data.augment.horizontal_flip


def test_digits_lt_split_seed_and_resize() -> None:
    first, again = load_dataset(DataConfig(split_seed=1)), load_dataset(DataConfig(split_seed=1))
    other = load_dataset(DataConfig(split_seed=2, image_size=16))
    assert torch.equal(first.test.images, again.test.images)
    assert other.image_size == 16 and other.augment.crop_padding == 2
    assert other.class_counts == first.class_counts


def test_digits_lt_mean_std_come_from_train() -> None:
    data = load_dataset(DataConfig(imbalance_factor=5))
    pixels = data.train.images.double() / 255
    assert data.mean[0] == pytest.approx(float(pixels.mean()))
    assert data.std[0] == pytest.approx(float(pixels.std(unbiased=False)))
    assert data.class_counts[-1] == 20


# ---------------------------------------------------------------------------------------------- CIFAR-LT
@pytest.mark.parametrize(("classes", "per_class", "counts_kind", "imbalance"),
                         [(100, 30, "ewb", 5), (100, 30, "wb", 10), (10, 40, "ewb", 10), (10, 40, "wb", 20)])
def test_cifar_lt_keeps_the_first_n_k_images_of_each_class(tmp_path: Path, classes: int, per_class: int,
                                                           counts_kind: str, imbalance: float) -> None:
    fake = write_fake_cifar(tmp_path, num_classes=classes, per_class_train=per_class, per_class_test=2)
    name = "cifar100-lt" if classes == 100 else "cifar10-lt"
    data = load_dataset(DataConfig(name=name, root=tmp_path, imbalance_factor=imbalance,
                                   cifar_counts=counts_kind))
    if counts_kind == "ewb":
        expected_counts = lt_counts(per_class - 20, imbalance, classes, "round")
    else:
        expected_counts = lt_counts(per_class, imbalance, classes, "floor")
    assert data.class_counts == expected_counts
    assert data.class_names == fake.class_names
    for label, n_train in enumerate(expected_counts):
        in_file_order = torch.from_numpy(fake.train_images[fake.train_labels == label])
        assert torch.equal(data.train.images[data.train.labels == label], in_file_order[:n_train])
        assert torch.equal(data.val.images[data.val.labels == label], in_file_order[n_train:n_train + 20])
    assert not image_rows(data.train.images) & image_rows(data.val.images)
    assert torch.equal(data.test.images, torch.from_numpy(fake.test_images))
    assert torch.equal(data.test.labels, torch.from_numpy(fake.test_labels))
    assert data.augment.crop_padding == 4 and data.augment.horizontal_flip
    assert data.mean == (0.4914, 0.4822, 0.4465)


def test_ewb_val_split_is_balanced(tmp_path: Path) -> None:
    write_fake_cifar(tmp_path, num_classes=10, per_class_train=40)
    data = load_dataset(DataConfig(name="cifar10-lt", root=tmp_path, imbalance_factor=10))
    assert torch.bincount(data.val.labels).tolist() == [20] * 10


def test_cifar_without_root_or_files_says_where_they_go(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="cifar100-lt needs --data-root"):
        load_dataset(DataConfig(name="cifar100-lt"))
    with pytest.raises(UserInputError, match=r"has no cifar-100-python/ folder.*--download"):
        load_dataset(DataConfig(name="cifar100-lt", root=tmp_path))
    write_fake_cifar(tmp_path, num_classes=10, per_class_train=25)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(UserInputError, match="data_batch_3"):
        load_dataset(DataConfig(name="cifar10-lt", root=tmp_path))


# ---------------------------------------------------------------------------------------------- folder:PATH
def test_folder_with_mixed_images_carves_val_and_keeps_labels(tmp_path: Path) -> None:
    root = write_fake_image_folder(tmp_path / "pets", {"cat": 3, "ant": 12, "bee": 6},
                                   {"ant": 2, "bee": 2, "cat": 1})
    data = load_dataset(DataConfig(name=f"folder:{root}", image_size=12))
    assert data.class_names == ["ant", "bee", "cat"]
    assert data.class_counts == [10, 5, 3]
    assert torch.bincount(data.val.labels, minlength=3).tolist() == [2, 1, 0]
    assert data.test.labels.tolist() == [0, 0, 1, 1, 2]
    assert data.train.images.shape[1:] == (3, 12, 12) and data.test.images.shape[1:] == (3, 12, 12)
    assert len(data.mean) == 3 and data.augment.crop_padding == 1
    assert_class_levels(data)


def test_all_grayscale_folder_keeps_one_channel_and_uses_its_val(tmp_path: Path) -> None:
    write_fake_image_folder(tmp_path / "gray", {"a": 4, "b": 2}, {"a": 1, "b": 1},
                            val_counts={"b": 2}, modes=("L",))
    data = load_dataset(DataConfig(name="folder:gray", root=tmp_path, image_size=16))
    assert data.channels == 1 and data.class_counts == [4, 2]
    assert data.val.labels.tolist() == [1, 1] and data.augment.crop_padding == 2
    assert_class_levels(data)


def folder_error(tmp_path: Path, **changes: object) -> str:
    with pytest.raises(UserInputError) as error:
        load_dataset(DataConfig(**{"name": f"folder:{tmp_path / 'set'}", "image_size": 8, **changes}))
    return str(error.value)


def test_folder_errors_name_what_to_fix(tmp_path: Path) -> None:
    assert "does not exist" in folder_error(tmp_path)
    root = write_fake_image_folder(tmp_path / "set", {"a": 2, "b": 2}, {"a": 1, "b": 1})
    assert "--image-size" in folder_error(tmp_path, image_size=None)
    assert "imbalance factor" in folder_error(tmp_path, imbalance_factor=10)
    (root / "train" / "c").mkdir()
    assert str(root / "train" / "c") in folder_error(tmp_path)
    (root / "train" / "c").rmdir()
    write_image(root / "test" / "zebra" / "0.png", 0, (8, 8), "RGB", np.random.default_rng(0))
    assert "zebra" in folder_error(tmp_path)
    (root / "test" / "zebra" / "0.png").unlink()
    (root / "test" / "zebra").rmdir()
    (root / "train" / "a" / "broken.png").write_bytes(b"not an image")
    assert "broken.png" in folder_error(tmp_path)


def test_folder_without_test_split_is_refused(tmp_path: Path) -> None:
    write_fake_image_folder(tmp_path / "set", {"a": 2, "b": 2}, {})
    assert "no test/ folder" in folder_error(tmp_path)


def test_unknown_data_set_lists_the_valid_names() -> None:
    with pytest.raises(ValueError) as error:
        DataConfig(name="mnist-lt")
    assert all(name in str(error.value) for name in (*BUILT_IN_DATASETS, "folder:PATH"))


# ---------------------------------------------------------------------------------------------- list files
def test_imagenet_lt_reads_its_three_lists(tmp_path: Path) -> None:
    write_fake_imagenet_lt(tmp_path, train_counts=[6, 4, 2], val_per_class=2, test_per_class=3)
    data = load_dataset(DataConfig(name="imagenet-lt", root=tmp_path, image_size=16))
    assert data.class_counts == [6, 4, 2]
    assert torch.bincount(data.val.labels).tolist() == [2, 2, 2]
    assert torch.bincount(data.test.labels).tolist() == [3, 3, 3]
    assert data.train.images.shape[1:] == (3, 16, 16) and data.pipeline == "in-memory"
    assert data.augment == AugmentSpec(crop_padding=0, horizontal_flip=True, random_resized_crop=True)
    assert data.mean == (0.485, 0.456, 0.406)
    assert_class_levels(data)


def test_inat2018_tests_on_its_val_list_and_carves_val_from_train(tmp_path: Path) -> None:
    write_fake_inat2018(tmp_path, train_counts=[10, 5, 2], val_per_class=2)
    data = load_dataset(DataConfig(name="inat2018", root=tmp_path))
    assert data.class_counts == [8, 4, 2]
    assert torch.bincount(data.val.labels, minlength=3).tolist() == [2, 1, 0]
    assert torch.bincount(data.test.labels).tolist() == [2, 2, 2]
    assert data.image_size == 224 and data.view.resize == 256  # the papers' crop and evaluation resize
    assert_class_levels(data)


def test_list_data_sets_name_the_missing_list_or_image(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="inat2018 needs --data-root"):
        load_dataset(DataConfig(name="inat2018"))
    with pytest.raises(UserInputError, match="ImageNet_LT_train.txt"):
        load_dataset(DataConfig(name="imagenet-lt", root=tmp_path))
    write_fake_inat2018(tmp_path, train_counts=[3, 2], val_per_class=1)
    missing = tmp_path / "train_val2018" / "val" / "n0001" / "1_0.jpg"
    missing.unlink()
    with pytest.raises(UserInputError, match=str(missing)):
        load_dataset(DataConfig(name="inat2018", root=tmp_path, image_size=8))


def truncate_one_png(root: Path) -> Path:
    """Cuts a train PNG of a folder data set in half: it still opens (the header is whole) but does not decode."""
    damaged = sorted((root / "train").rglob("*.png"))[0]
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    return damaged


def test_a_truncated_image_is_a_corrupt_image_error_naming_its_path(tmp_path: Path) -> None:
    root = write_fake_image_folder(tmp_path / "set", {"a": 3, "b": 3}, {"a": 1, "b": 1}, modes=("RGB",))
    damaged = truncate_one_png(root)
    with pytest.raises(CorruptImageError, match="damaged") as raised:
        load_dataset(DataConfig(name=f"folder:{root}", image_size=8))
    assert str(damaged) in str(raised.value)
