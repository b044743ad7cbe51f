"""The data module that `main.py` and the notebooks build from the config's `data` section."""
from __future__ import annotations

from typing import Any, Mapping

from torch.utils.data import DataLoader, Dataset

from ldm_lite.util import instantiate_from_config


class DataModuleFromConfig:
    """Builds the train / validation datasets named in the config and their loaders.

    Each split is a `{target, params}` mapping; batches are dicts of collated tensors (images
    stay HWC as the datasets return them; models convert to NCHW in `get_input`)."""

    def __init__(
        self,
        batch_size: int,
        train: Mapping[str, Any] | None = None,
        validation: Mapping[str, Any] | None = None,
        test: Mapping[str, Any] | None = None,
        num_workers: int | None = 0,
        shuffle_validation: bool = False,
        wrap: bool = False,  # original option (wrap plain datasets); accepted for config compatibility
    ) -> None:
        self.batch_size = batch_size
        self.num_workers = num_workers or 0
        self.shuffle_validation = shuffle_validation
        self.datasets: dict[str, Dataset] = {}
        for split, split_config in (("train", train), ("validation", validation), ("test", test)):
            if split_config is not None:
                self.datasets[split] = instantiate_from_config(split_config)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise ValueError(f"the data config has no '{split}' split: add data.params.{split} to the config")
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=shuffle,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=self.shuffle_validation)
