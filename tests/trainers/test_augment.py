"""Batched crop and flip equal the per-image torchvision-style reference, on every device there is."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainers.augment import (
    RRC_RATIO,
    RRC_SCALE,
    AugmentSpec,
    augment_batch,
    crop_at,
    flip_where,
    hflip,
    normalize,
    random_crop_flip,
    random_flip_mask,
    random_offsets,
    random_resized_boxes,
    resized_crop_at,
)

DEVICES = [pytest.param("cpu"), pytest.param(
    "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"))]


def _images(count: int, device: str, size: int = 8) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator).to(device)


@pytest.mark.parametrize("device", DEVICES)
def test_batched_crop_equals_per_image_pad_and_slice(device: str) -> None:
    images = _images(5, device)
    offsets = torch.tensor([[0, 0], [2, 1], [4, 4], [1, 3], [3, 0]], device=device)
    cropped = crop_at(images, 2, offsets)
    assert cropped.shape == images.shape and cropped.dtype == torch.uint8
    for n, (row, col) in enumerate(offsets.tolist()):
        reference = F.pad(images[n], (2, 2, 2, 2))[:, row:row + 8, col:col + 8]
        assert torch.equal(cropped[n], reference)


def test_crop_pads_with_zeros() -> None:
    corner = crop_at(torch.full((1, 1, 4, 4), 9, dtype=torch.uint8), 2, torch.tensor([[0, 0]]))
    assert corner[0, 0, :2, :].eq(0).all() and corner[0, 0, :, :2].eq(0).all()
    assert corner[0, 0, 2:, 2:].eq(9).all()


@pytest.mark.parametrize("device", DEVICES)
def test_flip_where_flips_exactly_the_chosen_images(device: str) -> None:
    images = _images(6, device)
    chosen = torch.tensor([True, False, False, True, True, False], device=device)
    flipped = flip_where(images, chosen)
    for n in range(6):
        expected = images[n].flip(-1) if chosen[n] else images[n]
        assert torch.equal(flipped[n], expected)


@pytest.mark.parametrize("device", DEVICES)
def test_random_crop_flip_is_crop_then_flip_with_the_generators_draws(device: str) -> None:
    images = _images(64, device)
    replay = torch.Generator(device=device).manual_seed(7)
    offsets = random_offsets(64, 4, replay, images.device)
    chosen = random_flip_mask(64, replay, images.device)
    expected = flip_where(crop_at(images, 4, offsets), chosen)
    actual = random_crop_flip(images, 4, True, torch.Generator(device=device).manual_seed(7))
    assert torch.equal(actual, expected)
    assert chosen.any() and not chosen.all()
    assert offsets.min() >= 0 and offsets.max() <= 8


def test_offsets_cover_every_position_of_random_crop() -> None:
    offsets = random_offsets(2000, 4, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert set(offsets.flatten().tolist()) == set(range(9))


def test_no_padding_and_no_flip_leaves_images_alone() -> None:
    images = _images(4, "cpu")
    assert torch.equal(random_crop_flip(images, 0, False, torch.Generator().manual_seed(0)), images)


def test_hflip_mirrors_the_last_axis() -> None:
    image = torch.arange(6, dtype=torch.uint8).view(1, 1, 2, 3)
    assert hflip(image)[0, 0].tolist() == [[2, 1, 0], [5, 4, 3]]


@pytest.mark.parametrize("channels_last", [True, False])
def test_normalize_scales_to_unit_range_then_standardises(channels_last: bool) -> None:
    images = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 3, 1, 1).repeat(2, 1, 2, 2)
    mean, std = (0.5, 0.5, 0.2), (0.25, 0.5, 0.1)
    out = normalize(images, mean, std, channels_last)
    assert out.dtype == torch.float32
    assert out[0, :, 0, 0].tolist() == pytest.approx([(0 - 0.5) / 0.25, (1 - 0.5) / 0.5, (0.2 - 0.2) / 0.1], abs=1e-6)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    assert out.is_contiguous(memory_format=memory_format)


def test_random_resized_boxes_keep_the_area_and_ratio_ranges_inside_the_image() -> None:
    boxes = random_resized_boxes(4000, 30, 40, torch.Generator().manual_seed(0), torch.device("cpu"))
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 40 + 1e-4).all() and (boxes[:, 3] <= 30 + 1e-4).all()
    area = width * height / (30 * 40)
    assert area.min() >= RRC_SCALE[0] * 0.99 and area.max() <= 1 + 1e-4
    unclamped = (width < 40) & (height < 30)
    ratio = width[unclamped] / height[unclamped]
    assert ratio.min() >= RRC_RATIO[0] - 1e-4 and ratio.max() <= RRC_RATIO[1] + 1e-4
    assert area.max() > 0.9 and area.min() < 0.1  # the whole range is drawn, not a corner of it


def test_resized_crop_of_the_whole_image_is_the_image_and_of_a_quarter_is_its_upscale() -> None:
    images = _images(3, "cpu", size=8)
    whole = torch.tensor([[0.0, 0.0, 8.0, 8.0]]).repeat(3, 1)
    assert torch.equal(resized_crop_at(images, whole, size=8), images)
    quarter = torch.tensor([[0.0, 0.0, 4.0, 4.0]]).repeat(3, 1)
    upscaled = F.interpolate(images[:, :, :4, :4].float(), size=8, mode="bilinear", align_corners=False)
    # The last row and column sample past the box's edge: roi_align reads the neighbouring image pixels where
    # a crop-then-resize repeats the edge, so only the others are compared.
    inside = (slice(None), slice(None), slice(0, 7), slice(0, 7))
    assert (resized_crop_at(images, quarter, size=8).float()[inside] - upscaled[inside]).abs().max() <= 1


def test_augment_batch_applies_random_resized_crop_only_when_the_spec_asks() -> None:
    images = _images(5, "cpu", size=8)
    plain = AugmentSpec(crop_padding=0, horizontal_flip=False)
    assert torch.equal(augment_batch(images, plain, torch.Generator().manual_seed(0)), images)
    resized = augment_batch(images, AugmentSpec(0, False, random_resized_crop=True), torch.Generator().manual_seed(0))
    assert resized.shape == images.shape and resized.dtype == torch.uint8 and not torch.equal(resized, images)
