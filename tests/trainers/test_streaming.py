"""The streaming image path on a generated ImageNet-LT tree (JPEGs of 256-500 px, 8 long-tailed classes):
both paths end to end on the CPU, the same eval features for the same weights, and bad input named."""

from __future__ import annotations

import gc
import multiprocessing
import os
import shutil
import threading
from pathlib import Path

import pytest
import torch

from tests.trainers.fake_data import write_imagenet_lt_photos
from trainers.backbone import build_backbone_model
from trainers.batches import eval_batches, train_batches
from trainers.config import (
    DataConfig,
    ExperimentConfig,
    FeaturePrecision,
    ModelConfig,
    RetrainConfig,
    RunOptions,
    Stage1Config,
)
from trainers.data import load_dataset
from trainers.data.streaming import LoaderStalledError
from trainers.device import Runtime, resolve_runtime
from trainers.errors import CorruptImageError, UserInputError
from trainers.experiment import run_experiment
from trainers.features import FeatureBank, extract_feature_bank
from trainers.heads import Head, train_heads
from trainers.loop import predict

TRAIN_COUNTS = [40, 28, 20, 14, 10, 7, 5, 4]
SIZE = 32  # small crops keep the CPU run short; the decoding still starts from 256-500 px JPEGs


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_imagenet_lt_photos(tmp_path_factory.mktemp("imagenet-lt"), TRAIN_COUNTS, val_per_class=2,
                                    test_per_class=3)


def runtime(workers: int = 2, timeout_s: float = 300.0) -> Runtime:
    return resolve_runtime(RunOptions(device="cpu", loader_workers=workers, loader_timeout_s=timeout_s))


def data_config(root: Path, pipeline: str) -> DataConfig:
    return DataConfig(name="imagenet-lt", root=root, image_size=SIZE, pipeline=pipeline)


def test_both_paths_give_the_same_eval_features_for_the_same_weights(tree: Path) -> None:
    in_memory = load_dataset(data_config(tree, "in-memory"))
    streamed = load_dataset(data_config(tree, "streaming"))
    assert (in_memory.pipeline, streamed.pipeline) == ("in-memory", "streaming")
    assert in_memory.view == streamed.view and in_memory.view.resize == round(SIZE * 256 / 224)
    torch.manual_seed(0)
    model = build_backbone_model(ExperimentConfig(data=data_config(tree, "auto"),
                                                  model=ModelConfig(arch="small-cnn")), in_memory, runtime())
    features_in_memory, _ = predict(model, in_memory.test, in_memory, runtime())
    features_streamed, _ = predict(model, streamed.test, streamed, runtime(), batch_size=7)  # batches != files
    assert torch.equal(features_in_memory, features_streamed)


@pytest.mark.parametrize("pipeline", ["in-memory", "streaming"])
def test_stage1_bank_and_stage2_run_end_to_end_on_either_path(tree: Path, pipeline: str) -> None:
    config = ExperimentConfig(data=data_config(tree, pipeline), model=ModelConfig(arch="small-cnn"),
                              stage1=Stage1Config(epochs=1, batch_size=32),
                              stage2=RetrainConfig(epochs=1, feature_views=1))
    result = run_experiment(config, runtime(workers=1))
    assert result.data.pipeline == pipeline and result.data.image_size == SIZE
    assert (result.data.flip, result.data.random_resized_crop, result.data.crop_padding) == (True, True, 0)
    assert result.data.train_images == sum(TRAIN_COUNTS) and result.data.test_images == 3 * len(TRAIN_COUNTS)
    assert result.class_counts == TRAIN_COUNTS
    assert len(result.stage2.per_class_test) == len(TRAIN_COUNTS)
    assert 0 <= result.stage2.test.all <= 100 and result.stage2.test.few is not None


def test_auto_streams_only_above_the_in_memory_limit(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_dataset(data_config(tree, "auto")).pipeline == "in-memory"
    decoded = sum(TRAIN_COUNTS + [5 * len(TRAIN_COUNTS)]) * 3 * SIZE**2
    monkeypatch.setattr("trainers.data.streaming.IN_MEMORY_LIMIT", decoded - 1)
    data = load_dataset(data_config(tree, "auto"))
    assert data.pipeline == "streaming" and data.estimated_decoded_bytes == decoded


# ---------------------------------------------------------------------------------------------- bad input
def tree_with_lists_only(tree: Path, tmp_path: Path) -> Path:
    """A root of its own list files over the shared tree's image folders (symlinked), for a test to edit."""
    root = tmp_path / "root"
    (root / "val").mkdir(parents=True)
    (root / "train").symlink_to(tree / "train")
    for test_image in (tree / "val").iterdir():
        (root / "val" / test_image.name).symlink_to(test_image)
    for list_file in tree.glob("*.txt"):
        shutil.copy(list_file, root)
    return root


def prepend_test_image(root: Path, name: str) -> Path:
    test_list = root / "ImageNet_LT_test.txt"
    test_list.write_text(f"val/{name} 0\n" + test_list.read_text())
    return root / "val" / name


@pytest.mark.parametrize("fault", ["missing", "corrupt"])
def test_a_bad_image_fails_the_streamed_pass_with_the_file_named(tree: Path, tmp_path: Path, fault: str) -> None:
    root = tree_with_lists_only(tree, tmp_path)
    bad = prepend_test_image(root, "bad.JPEG")
    if fault == "corrupt":
        bad.write_bytes(next((tree / "val").iterdir()).read_bytes()[:200])  # a JPEG cut off inside its header
    data = load_dataset(data_config(root, "streaming"))
    with pytest.raises(UserInputError, match=str(bad)) as error:
        predict(torch.nn.Identity(), data.test, data, runtime(workers=1))  # type: ignore[arg-type]
    assert "Traceback" not in str(error.value)
    assert isinstance(error.value, CorruptImageError) == (fault == "corrupt")


def test_a_failed_streamed_pass_stops_its_loader_workers_at_once(tree: Path, tmp_path: Path) -> None:
    """Not when the garbage collector reaches the DataLoader's exception, whose traceback holds the iterator:
    its shutdown from there waited 5 s on a join of each worker it could no longer signal."""
    root = tree_with_lists_only(tree, tmp_path)
    prepend_test_image(root, "missing.JPEG")
    data = load_dataset(data_config(root, "streaming"))
    gc.disable()
    try:
        with pytest.raises(UserInputError, match="missing.JPEG"):
            predict(torch.nn.Identity(), data.test, data, runtime(workers=1))  # type: ignore[arg-type]
        assert multiprocessing.active_children() == []
    finally:
        gc.enable()


def test_a_stuck_file_fails_after_the_loader_timeout_instead_of_hanging(tree: Path, tmp_path: Path) -> None:
    root = tree_with_lists_only(tree, tmp_path)
    stuck = prepend_test_image(root, "stuck.JPEG")
    os.mkfifo(stuck)  # opening a FIFO without a writer blocks, as a read from a hung network mount does
    data = load_dataset(data_config(root, "streaming"))
    # Releases the stuck worker 2 s in, after the 1 s timeout has fired, so its shutdown takes no 5 s join.
    release = threading.Timer(2.0, lambda: stuck.open("wb").close())
    release.start()
    try:
        with pytest.raises(LoaderStalledError, match="within 1 s"):
            predict(torch.nn.Identity(), data.test, data, runtime(workers=1, timeout_s=1.0))  # type: ignore[arg-type]
    finally:
        release.join()


def rewrite_list(root: Path, list_name: str, change: dict[int, str]) -> None:
    lines = (root / list_name).read_text().splitlines()
    for number, line in change.items():
        lines[number] = line
    (root / list_name).write_text("\n".join(lines) + "\n")


def test_lists_with_classes_out_of_order_or_files_outside_the_root_are_refused(tree: Path, tmp_path: Path) -> None:
    root = tree_with_lists_only(tree, tmp_path)
    original = (root / "ImageNet_LT_train.txt").read_text()
    first_path = original.split()[0]
    rewrite_list(root, "ImageNet_LT_train.txt", {1: f"{original.splitlines()[1].split()[0]} 3"})
    with pytest.raises(UserInputError, match="classes out of order"):
        load_dataset(data_config(root, "streaming"))
    (root / "ImageNet_LT_train.txt").write_text(original)
    rewrite_list(root, "ImageNet_LT_val.txt", {0: f"{first_path.replace('_train0', '_val0')} 5"})
    with pytest.raises(UserInputError, match="ImageNet_LT_val.txt.*its class folder has label 0"):
        load_dataset(data_config(root, "streaming"))
    for outside in ("../elsewhere/a.JPEG", "/etc/passwd"):
        rewrite_list(root, "ImageNet_LT_test.txt", {0: f"{outside} 0"})
        with pytest.raises(UserInputError, match="outside the data root"):
            load_dataset(data_config(root, "streaming"))


def test_batched_decoding_in_the_training_process_matches_the_workers(tree: Path) -> None:
    """decode=device on the CPU runs the GPU path's code (one decode_jpeg call per batch, crops after it)."""
    data = load_dataset(data_config(tree, "streaming"))
    on_device = resolve_runtime(RunOptions(device="cpu", loader_workers=1, decode="device"))
    assert on_device.decode_on_device and not runtime().decode_on_device
    workers_batches = list(eval_batches(data.test, data, runtime(), batch_size=10))
    device_batches = list(eval_batches(data.test, data, on_device, batch_size=10))
    assert all(torch.equal(a, b) for a, b in zip(workers_batches, device_batches, strict=True))
    generator = torch.Generator().manual_seed(0)
    images, labels = next(train_batches(data, 16, on_device, generator))
    assert images.shape == (16, 3, SIZE, SIZE) and labels.shape == (16,)


@pytest.mark.parametrize(("precision", "tolerance"), [("float16", 1e-3), ("float32", 1e-5)])
def test_a_streamed_data_sets_bank_stays_on_disk_at_its_precision_and_stage2_reads_it(
        tree: Path, tmp_path: Path, precision: FeaturePrecision, tolerance: float) -> None:
    in_memory = load_dataset(data_config(tree, "in-memory"))
    streamed = load_dataset(data_config(tree, "streaming"))
    torch.manual_seed(0)
    model = build_backbone_model(ExperimentConfig(data=data_config(tree, "auto"),
                                                  model=ModelConfig(arch="small-cnn")), in_memory, runtime())
    dense = extract_feature_bank(model, in_memory, runtime(), views=1, flips=True, seed=0, precision=precision)
    on_disk = extract_feature_bank(model, streamed, runtime(workers=0), views=1, flips=True, seed=0,
                                   precision=precision)
    assert not dense.on_disk and dense.test.dtype == torch.float32  # in-memory banks are float32 always
    assert on_disk.on_disk and on_disk.test.dtype == getattr(torch, precision)
    assert on_disk.train_views.shape == dense.train_views.shape
    # the same images through the same weights, stored at the bank's precision
    torch.testing.assert_close(on_disk.test.float(), dense.test, rtol=tolerance, atol=tolerance)
    on_disk.save(tmp_path / "features.pt")
    loaded = FeatureBank.load(tmp_path / "features.pt", torch.device("cpu"))
    assert loaded.on_disk and torch.equal(loaded.test, on_disk.test) and torch.equal(loaded.val_flipped,
                                                                                     on_disk.val_flipped)
    head = Head(model.classifier.weight.detach(), model.classifier.bias.detach())
    torch.testing.assert_close(head.logits(loaded.test), head.logits(dense.test), rtol=1e-2, atol=1e-2)
    [trained] = train_heads(loaded, head, [RetrainConfig(epochs=1, batch_size=16)], in_memory.class_counts, seed=0)
    assert torch.isfinite(trained.weight).all() and not torch.equal(trained.weight, head.weight)
