"""The datasets of the paper, read from files the user already has, in the original code's layouts.

Nothing here downloads: each class checks the expected layout and, when files are missing, says
what it looked for and where the original instructions get the data. The `...Train` /
`...Validation` classes keep the original class names and parameters so original configs
(`ldm.data.lsun.LSUNChurchesTrain`, `taming.data.faceshq.CelebAHQTrain`,
`ldm.data.imagenet.ImageNetTrain`, ...) can be mapped onto them."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ldm_lite.data.folder import ImagePathsDataset, list_images
from ldm_lite.data.transforms import check_split

_FACES = {
    "celebahq": (
        "CelebA-HQ: the 30,000 images as 1024x1024 files (imgHQ00000.npy ... as made by the "
        "progressive_growing_of_gans dataset tool, or png/jpg with the same stems) in data/celebahq/, "
        "and the split lists celebahqtrain.txt / celebahqvalidation.txt (one file name per line, shipped "
        "in the data/ folder of CompVis/taming-transformers) in data/. The original README points to "
        "the taming-transformers instructions for preparing CelebA-HQ."
    ),
    "ffhq": (
        "FFHQ: the 70,000 images (images1024x1024 from github.com/NVlabs/ffhq-dataset) in data/ffhq/, "
        "and the split lists ffhqtrain.txt / ffhqvalidation.txt (shipped in the data/ folder of "
        "CompVis/taming-transformers) in data/."
    ),
}
# subset -> (file list prefix of the original, image folder)
LSUN_SUBSETS: dict[str, tuple[str, str]] = {
    "churches": ("church_outdoor", "churches"),
    "bedrooms": ("bedrooms", "bedrooms"),
    "cats": ("cat", "cats"),
}
_LSUN_HELP = (
    "LSUN: download the category with the scripts of github.com/fyu/lsun and export the images; the "
    "original train/validation file lists come from https://ommer-lab.com/files/lsun.zip (extract into "
    "data/lsun/). Expected: data/lsun/{prefix}_train.txt and data/lsun/{prefix}_val.txt (relative image "
    "paths, one per line) and the images under data/lsun/{folder}/."
)
_IMAGENET_HELP = (
    "ImageNet (ILSVRC2012, from image-net.org after registration): expected {root}/train/<synset>/*.JPEG "
    "and {root}/val/<synset>/*.JPEG with synset ids like n01440764 as folder names (validation images "
    "sorted into synset folders, as the original code prepares them), plus optionally "
    "{root}/synset_human.txt or LOC_synset_mapping.txt ('n01440764 tench, Tinca tinca' per line) for "
    "human-readable labels."
)


def _read_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _select_keys(item: dict[str, Any], keys: Sequence[str] | None) -> dict[str, Any]:
    return item if keys is None else {key: item[key] for key in keys}


class FacesHQ(ImagePathsDataset):
    """CelebA-HQ (`dataset="celebahq"`) or FFHQ (`"ffhq"`): images named by the split list
    `<list_dir>/<dataset><split>.txt` (list_dir defaults to the parent of `root`, i.e. data/),
    shorter side resized to `size`, center crop (or random with crop="random"). Items: `image`."""

    def __init__(
        self,
        dataset: str = "celebahq",
        split: str = "train",
        size: int | None = 256,
        root: str | Path | None = None,
        list_dir: str | Path | None = None,
        crop: str = "center",
        flip_probability: float = 0.0,
        keys: Sequence[str] | None = None,
    ) -> None:
        if dataset not in _FACES:
            raise ValueError(f"dataset must be one of {sorted(_FACES)}, got {dataset!r}")
        self.split, self.keys = check_split(split), keys
        root = Path(root) if root is not None else Path("data") / dataset
        list_dir = Path(list_dir) if list_dir is not None else root.parent
        candidates = [list_dir / f"{dataset}{self.split}.txt", root / f"{dataset}{self.split}.txt"]
        list_file = next((c for c in candidates if c.is_file()), None)
        if list_file is None or not root.is_dir():
            missing = root if not root.is_dir() else candidates[0]
            raise FileNotFoundError(f"{missing} not found. {_FACES[dataset]}")
        paths = [root / name for name in _read_list(list_file)]
        absent = [p for p in paths if not p.exists()]
        if absent:
            raise FileNotFoundError(f"{len(absent)} of {len(paths)} files listed in {list_file} are missing under {root} (first: {absent[0]}). {_FACES[dataset]}")
        super().__init__(paths, size, crop, flip_probability)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return _select_keys(super().__getitem__(index), self.keys)


class LSUN(ImagePathsDataset):
    """LSUN churches / bedrooms / cats in the original split: `data/lsun/<prefix>_train.txt`
    (or `_val.txt`) list image paths relative to `data/lsun/<subset>/`. As the original: center
    square crop, bicubic resize to `size`, flip with `flip_p` (0.5 by default). Items: `image`."""

    def __init__(
        self,
        subset: str = "churches",
        split: str = "train",
        size: int | None = 256,
        data_root: str | Path = "data/lsun",
        flip_p: float = 0.5,
        interpolation: str = "bicubic",
    ) -> None:
        if subset not in LSUN_SUBSETS:
            raise ValueError(f"subset must be one of {sorted(LSUN_SUBSETS)}, got {subset!r}")
        self.split = check_split(split)
        prefix, folder = LSUN_SUBSETS[subset]
        data_root = Path(data_root)
        suffix = "train" if self.split == "train" else "val"
        help_text = _LSUN_HELP.format(prefix=prefix, folder=folder)
        candidates = [data_root / f"{prefix}_{suffix}.txt", data_root / f"{subset}_{suffix}.txt"]
        list_file = next((c for c in candidates if c.is_file()), None)
        image_root = data_root / folder
        if list_file is None or not image_root.is_dir():
            missing = image_root if list_file is not None else candidates[0]
            raise FileNotFoundError(f"{missing} not found. {help_text}")
        paths = [image_root / name for name in _read_list(list_file)]
        absent = [p for p in paths if not p.exists()]
        if absent:
            raise FileNotFoundError(f"{len(absent)} of {len(paths)} files listed in {list_file} are missing (first: {absent[0]}). {help_text}")
        super().__init__(paths, size, "center", flip_p, interpolation)


def read_synset_names(root: Path) -> dict[str, str]:
    """synset id -> human label from `synset_human.txt` or `LOC_synset_mapping.txt` in `root`."""
    for name in ("synset_human.txt", "LOC_synset_mapping.txt"):
        path = root / name
        if path.is_file():
            pairs = (line.split(maxsplit=1) for line in _read_list(path))
            return {pair[0]: (pair[1] if len(pair) > 1 else pair[0]) for pair in pairs}
    return {}


class ImageNet(ImagePathsDataset):
    """ImageNet from `root/train/<synset>/` and `root/val/<synset>/` folders. `class_label` is
    the index of the synset among the sorted training synsets (the original's order), `synset`
    the id, `human_label` its name from the mapping file (else the id). Items also carry `caption`
    (the first name, "a photo of a tench")."""

    def __init__(
        self,
        split: str = "train",
        size: int | None = 256,
        root: str | Path = "data/imagenet",
        crop: str | None = None,
        flip_probability: float = 0.0,
    ) -> None:
        self.split, root = check_split(split), Path(root)
        split_dir = root / ("train" if self.split == "train" else "val")
        synsets = sorted(p.name for p in (root / "train").iterdir() if p.is_dir()) if (root / "train").is_dir() else []
        if not split_dir.is_dir() or not synsets:
            raise FileNotFoundError(f"{split_dir if not split_dir.is_dir() else root / 'train'} has no synset folders. {_IMAGENET_HELP.format(root=root)}")
        names = read_synset_names(root)
        index_of = {synset: i for i, synset in enumerate(synsets)}
        paths, extras = [], []
        for folder in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            if folder.name not in index_of:
                raise ValueError(f"{folder} is not a synset of {root / 'train'}; validation folders must use the training synset ids")
            human = names.get(folder.name, folder.name)
            for path in list_images(folder, (".jpeg", ".jpg", ".png", ".webp")):
                paths.append(path)
                extras.append({
                    "class_label": index_of[folder.name], "synset": folder.name, "human_label": human,
                    "caption": f"a photo of a {human.split(',')[0].strip()}",
                })  # fmt: skip
        if not paths:
            raise FileNotFoundError(f"no images in the synset folders of {split_dir}. {_IMAGENET_HELP.format(root=root)}")
        crop = crop or ("random" if self.split == "train" else "center")
        super().__init__(paths, size, crop, flip_probability, "bicubic", extras)


# Original class names and parameters (for original configs).
class CelebAHQTrain(FacesHQ):
    def __init__(self, size: int = 256, keys: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__("celebahq", "train", size, keys=keys, **kwargs)


class CelebAHQValidation(FacesHQ):
    def __init__(self, size: int = 256, keys: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__("celebahq", "validation", size, keys=keys, **kwargs)


class FFHQTrain(FacesHQ):
    def __init__(self, size: int = 256, keys: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__("ffhq", "train", size, keys=keys, **kwargs)


class FFHQValidation(FacesHQ):
    def __init__(self, size: int = 256, keys: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__("ffhq", "validation", size, keys=keys, **kwargs)


class LSUNChurchesTrain(LSUN):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("churches", "train", **kwargs)


class LSUNChurchesValidation(LSUN):
    def __init__(self, flip_p: float = 0.0, **kwargs: Any) -> None:
        super().__init__("churches", "validation", flip_p=flip_p, **kwargs)


class LSUNBedroomsTrain(LSUN):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("bedrooms", "train", **kwargs)


class LSUNBedroomsValidation(LSUN):
    def __init__(self, flip_p: float = 0.0, **kwargs: Any) -> None:
        super().__init__("bedrooms", "validation", flip_p=flip_p, **kwargs)


class LSUNCatsTrain(LSUN):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("cats", "train", **kwargs)


class LSUNCatsValidation(LSUN):
    def __init__(self, flip_p: float = 0.0, **kwargs: Any) -> None:
        super().__init__("cats", "validation", flip_p=flip_p, **kwargs)


class ImageNetTrain(ImageNet):
    """Original signature: `ImageNetTrain(config={"size": 256})`."""

    def __init__(self, config: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__("train", size=(config or {}).get("size", 256), **kwargs)


class ImageNetValidation(ImageNet):
    def __init__(self, config: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__("validation", size=(config or {}).get("size", 256), **kwargs)
