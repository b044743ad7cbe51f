"""Crops of the photos and textures that ship inside scikit-image (no download needed).

Each photo is split in two side by side: the right-most strip (`validation_fraction` of the
width, at least one crop wide) gives validation crops, the rest gives training crops, so the two
splits never share a pixel. Training crops are random (torch's generator) and flipped;
validation crops are fixed by `seed` and the index. Licences: scikit-image's data files are
public domain / CC0 or free to use (see `skimage/data/README.txt`)."""
from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np
import torch

from ldm_lite.data.transforms import check_split, maybe_flip, resize, to_float_image

# name -> what the photo shows (used for captions)
PHOTOS: dict[str, str] = {
    "astronaut": "an astronaut",
    "coffee": "a cup of coffee",
    "chelsea": "a cat",
    "rocket": "a rocket on a launch pad",
    "camera": "a man with a camera",
    "colorwheel": "a colour wheel",
    "hubble_deep_field": "galaxies in deep space",
    "immunohistochemistry": "stained tissue under a microscope",
    "retina": "a retina",
    "brick": "a brick wall",
    "grass": "grass",
    "gravel": "gravel",
    "moon": "the surface of the moon",
    "coins": "old coins",
    "clock": "a clock",
}
DEFAULT_PHOTOS: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket", "camera", "colorwheel", "brick", "grass", "gravel")


@functools.lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """A scikit-image sample as uint8 RGB (H, W, 3); gray ones are repeated on 3 channels."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; choose from {sorted(PHOTOS)} (others need a download)")
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3]
    image.setflags(write=False)
    return image.astype(np.uint8, copy=False)


class PhotosDataset(torch.utils.data.Dataset):
    """`length` square crops of `size` px from the scikit-image photos `names`, each photo first
    scaled by `scale` (e.g. 0.25 to see more of it in a small crop). Items: `image`, `caption`
    ("a photo of a cat"), `class_label` (index of the photo in `names`), `human_label` (its name)."""

    def __init__(
        self,
        size: int = 64,
        split: str = "train",
        length: int = 1000,
        names: Sequence[str] = DEFAULT_PHOTOS,
        scale: float = 0.5,
        flip_probability: float | None = None,
        seed: int = 0,
        validation_fraction: float = 0.2,
    ) -> None:
        self.split = check_split(split)
        if not names:
            raise ValueError("names must list at least one photo, e.g. ['astronaut', 'coffee']")
        self.size, self.length, self.seed, self.names = size, length, seed, list(names)
        self.flip_probability = (0.5 if self.split == "train" else 0.0) if flip_probability is None else flip_probability
        self.regions = []
        for name in self.names:
            photo = load_photo(name)
            if scale != 1.0:
                photo = resize(photo, round(photo.shape[0] * scale), round(photo.shape[1] * scale), "area")
            height, width = photo.shape[:2]
            strip = max(size, round(width * validation_fraction))
            region = photo[:, width - strip :] if self.split == "validation" else photo[:, : width - strip]
            if region.shape[0] < size or region.shape[1] < size:
                raise ValueError(
                    f"photo {name!r} is {height}x{width} after scale={scale}: too small for {size} px crops in both "
                    f"splits; raise scale or lower size"
                )
            self.regions.append(region)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        photo_index = index % len(self.names)
        region = self.regions[photo_index]
        room_y, room_x = region.shape[0] - self.size + 1, region.shape[1] - self.size + 1
        if self.split == "validation":
            top, left = np.random.default_rng([self.seed, index]).integers(0, (room_y, room_x))
        else:
            top, left = (int(torch.randint(0, room, ()).item()) for room in (room_y, room_x))
        crop = region[top : top + self.size, left : left + self.size]
        name = self.names[photo_index]
        return {
            "image": to_float_image(np.ascontiguousarray(maybe_flip(crop, self.flip_probability))),
            "caption": f"a photo of {PHOTOS[name]}",
            "class_label": photo_index,
            "human_label": name,
        }
