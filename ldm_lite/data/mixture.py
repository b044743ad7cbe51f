"""Several datasets as one, e.g. shapes and emoji for a text model that draws both."""
from __future__ import annotations

import bisect
from typing import Any, Mapping, Sequence

from torch.utils.data import Dataset

from ldm_lite.util import instantiate_from_config


class MixtureDataset(Dataset):
    """The concatenation of the datasets built from `datasets` (a list of `{target, params}`),
    keeping only `keys` of each example so that batches collate (default: image and caption)."""

    def __init__(self, datasets: Sequence[Mapping[str, Any]], keys: Sequence[str] = ("image", "caption")) -> None:
        if not datasets:
            raise ValueError("MixtureDataset needs at least one dataset config in 'datasets'")
        self.parts = [instantiate_from_config(config) for config in datasets]
        self.keys = tuple(keys)
        self.ends: list[int] = []
        total = 0
        for part in self.parts:
            total += len(part)
            self.ends.append(total)

    def __len__(self) -> int:
        return self.ends[-1]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        part = bisect.bisect_right(self.ends, index)
        start = self.ends[part - 1] if part else 0
        example = self.parts[part][index - start]
        return {key: example[key] for key in self.keys}
