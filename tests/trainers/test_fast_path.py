"""The on-device batch path gives the tensors the papers' per-image PIL pipeline gives."""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from trainers.augment import crop_at, hflip, normalize

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def _pil_pipeline(image: np.ndarray, top: int, left: int, flip: bool) -> torch.Tensor:
    """torchvision's RandomCrop(32, padding=4) at a given offset, flip, ToTensor, Normalize, one image."""
    pil = TF.crop(TF.pad(Image.fromarray(image), 4), top, left, 32, 32)
    if flip:
        pil = TF.hflip(pil)
    return TF.normalize(TF.to_tensor(pil), MEAN, STD)


def test_batched_crop_flip_normalize_equals_the_pil_pipeline() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    offsets = torch.tensor([[0, 0], [8, 8], [3, 5], [4, 4], [7, 1], [2, 6]])
    flips = torch.tensor([False, True, True, False, True, False])
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    cropped = crop_at(batch, 4, offsets)
    cropped = torch.where(flips[:, None, None, None], hflip(cropped), cropped)
    fast = normalize(cropped, MEAN, STD, channels_last=True)
    expected = torch.stack([_pil_pipeline(images[n], int(offsets[n, 0]), int(offsets[n, 1]), bool(flips[n]))
                            for n in range(6)])
    torch.testing.assert_close(fast, expected, rtol=0, atol=1e-5)
    assert fast.is_contiguous(memory_format=torch.channels_last)
