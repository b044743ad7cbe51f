"""Tests of the datasets in ldm_lite.data: value ranges, shapes, deterministic and disjoint
splits, captions and labels, the shapes judge, masks, and clear errors on bad inputs."""
from __future__ import annotations

import gzip
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ldm_lite.data import emoji as emoji_module
from ldm_lite.data.emoji import CATEGORIES, EmojiDataset, build_emoji_cache
from ldm_lite.data.folder import ImageFolderDataset
from ldm_lite.data.masks import InpaintingDataset, apply_mask, random_box_mask, random_mask, random_stroke_mask
from ldm_lite.data.mnist import FashionMNISTDataset, MNISTDataset
from ldm_lite.data.original import LSUN, CelebAHQTrain, FacesHQ, FFHQValidation, ImageNet, ImageNetTrain, LSUNChurchesTrain
from ldm_lite.data.photos import PhotosDataset, load_photo
from ldm_lite.data.shapes import (COLOR_NAMES, POSITIONS, SHAPES, SIZES, ShapesDataset, attribute_matches, judge_shapes,
                                  shapes_match)
from ldm_lite.data.transforms import crop, in_validation, to_float_image, to_uint8_image

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def temporary_cache(tmp_path_factory):
    """All caches of this module (emoji, MNIST) go to a fresh temporary LDM_LITE_CACHE."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LDM_LITE_CACHE", str(tmp_path_factory.mktemp("ldm_lite_cache")))
        yield


def check_item(item: dict, size: int, channels: int = 3, uniform: bool = False) -> None:
    image = item["image"]
    assert image.dtype == np.float32 and image.shape == (size, size, channels)
    assert image.min() >= -1.0 and image.max() <= 1.0
    assert uniform or image.max() - image.min() > 0.1, "image is blank"


def image_keys(dataset) -> set[bytes]:
    return {to_uint8_image(dataset[i]["image"]).tobytes() for i in range(len(dataset))}


def nchw(images_uint8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float() / 127.5 - 1.0


# ----------------------------------------------------------------------------- transforms
def test_transforms_round_trip_and_split_rule():
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    as_float = to_float_image(pixels)
    assert as_float.min() == -1.0 and as_float.max() == 1.0
    assert np.array_equal(to_uint8_image(as_float), pixels)
    assert in_validation("a.png", 0.3) == in_validation("a.png", 0.3)
    fraction = np.mean([in_validation(f"file{i}", 0.2) for i in range(2000)])
    assert 0.15 < fraction < 0.25
    with pytest.raises(ValueError, match="resize it first"):
        crop(np.zeros((8, 8, 3), np.uint8), 16)


# ----------------------------------------------------------------------------- shapes
def test_shapes_items_captions_and_determinism():
    dataset = ShapesDataset(size=32, split="train", length=64, seed=1)
    again = ShapesDataset(size=32, split="train", length=64, seed=1)
    other_seed = ShapesDataset(size=32, split="train", length=64, seed=2)
    assert np.array_equal(dataset.images, again.images)
    assert not np.array_equal(dataset.images, other_seed.images)
    for index in range(len(dataset)):
        item = dataset[index]
        check_item(item, 32)
        expected = f"a {SIZES[item['size']]} {COLOR_NAMES[item['color']]} {SHAPES[item['shape']]} at the {POSITIONS[item['position']]}"
        assert item["caption"] == expected
        assert item["class_label"] == item["shape"] * len(COLOR_NAMES) + item["color"]
    check_item(ShapesDataset(size=64, length=4)[0], 64)


def test_shapes_splits_are_disjoint_and_cover_the_universe():
    train, validation = ShapesDataset(split="train"), ShapesDataset(split="validation")
    train_images, validation_images = image_keys(train), image_keys(validation)
    assert len(train_images) == len(train) and len(validation_images) == len(validation)  # every configuration once
    assert not train_images & validation_images
    assert 0.05 < len(validation) / (len(train) + len(validation)) < 0.15


def test_judge_reads_held_out_shapes_exactly_and_robustly():
    validation = ShapesDataset(split="validation", length=400, seed=7)
    images = nchw(validation.images)
    judged = judge_shapes(images)
    for key in ("shape", "color", "size", "position", "background"):
        accuracy = np.mean([result[key] == value for result, value in zip(judged, validation.attributes[key])])
        assert accuracy >= 0.98, (key, accuracy)
    generator = torch.Generator().manual_seed(0)
    blurred = 0.25 * images + 0.75 * torch.nn.functional.avg_pool2d(torch.nn.functional.pad(images, (1,) * 4, mode="replicate"), 3, 1)
    degraded = (blurred + 0.05 * torch.randn(images.shape, generator=generator)).clamp(-1, 1)
    attributes = {key: torch.as_tensor(values) for key, values in validation.attributes.items()}
    assert shapes_match(degraded, attributes).mean() >= 0.95
    # wrong targets must be rejected: shift every colour by one
    wrong = dict(attributes, color=(attributes["color"] + 1) % len(COLOR_NAMES))
    assert shapes_match(images, wrong).mean() == 0.0
    blank = -torch.ones(2, 3, 32, 32)
    assert [result["found"] for result in judge_shapes(blank)] == [False, False]


def test_attribute_matches_are_per_key_and_shapes_match_is_their_and():
    validation = ShapesDataset(split="validation", length=40, seed=3)
    images = nchw(validation.images)
    wrong_colours = dict(validation.attributes, color=(np.asarray(validation.attributes["color"]) + 1) % len(COLOR_NAMES))
    matches = attribute_matches(images, wrong_colours)
    assert sorted(matches) == ["color", "position", "shape", "size"]
    assert not matches["color"].any() and matches["shape"].mean() >= 0.95 and matches["position"].mean() >= 0.95
    assert np.array_equal(shapes_match(images, wrong_colours, keys=("shape", "size")), matches["shape"] & matches["size"])
    assert shapes_match(images, wrong_colours, keys=()).all()


def test_shapes_bad_inputs():
    with pytest.raises(ValueError, match="multiple of 32"):
        ShapesDataset(size=30)
    with pytest.raises(ValueError, match="colors"):
        ShapesDataset(colors=["pink"])
    with pytest.raises(ValueError, match="split"):
        ShapesDataset(split="test")
    with pytest.raises(ValueError, match="NCHW"):
        judge_shapes(torch.zeros(2, 32, 32, 3))


# ----------------------------------------------------------------------------- emoji
def test_emoji_cache_is_built_atomically_in_the_cache_dir():
    path = build_emoji_cache(32)
    assert path.parent == Path(os.environ["LDM_LITE_CACHE"]) and path.exists()
    assert not list(path.parent.glob("*.tmp"))
    modified = path.stat().st_mtime_ns
    assert build_emoji_cache(32) == path and path.stat().st_mtime_ns == modified  # reused, not rebuilt


def test_emoji_dataset_items_labels_and_splits():
    train = EmojiDataset(size=32, split="train")
    validation = EmojiDataset(size=32, split="validation", caption_template="{name}")
    assert len(train) > 1000 and len(validation) > 50
    assert not set(train.codes) & set(validation.codes)
    assert np.array_equal(EmojiDataset(size=32, split="validation").codes, validation.codes)
    for index in range(0, len(train), 97):
        item = train[index]
        check_item(item, 32)
        assert item["caption"].startswith("an emoji of ") and len(item["caption"]) > len("an emoji of ")
        assert CATEGORIES[item["class_label"]] == item["human_label"]
    assert validation[0]["caption"] == validation[0]["name"]
    corner = train[0]["image"][0, 0]
    assert np.allclose(corner, 1.0, atol=0.02), "white background expected in the corner"
    assert {item for item in train.labels} == set(range(len(CATEGORIES)))
    red_apple = [i for i, name in enumerate(train.names) if name == "red apple"] + [i for i, name in enumerate(validation.names) if name == "red apple"]
    assert red_apple, "the red apple emoji should be named"


def test_emoji_skin_tones_and_categories():
    without = EmojiDataset(split="train")
    with_tones = EmojiDataset(split="train", skin_tones=True)
    assert len(with_tones) > len(without) + 1000
    assert not any("skin tone" in name for name in without.names)
    assert any("skin tone" in name for name in with_tones.names)
    # skin-tone variants share the split of their base emoji
    validation_tones = EmojiDataset(split="validation", skin_tones=True)
    bases = {emoji_module._without_skin_tones(code) for code in validation_tones.codes}
    assert not bases & {emoji_module._without_skin_tones(code) for code in with_tones.codes}
    food = EmojiDataset(split="train", categories=["Food & Drink"])
    assert set(food.labels) == {CATEGORIES.index("Food & Drink")}


def test_emoji_bad_inputs():
    with pytest.raises(ValueError, match="size"):
        EmojiDataset(size=48)
    with pytest.raises(ValueError, match="name"):
        EmojiDataset(caption_template="an emoji")
    with pytest.raises(ValueError, match="background"):
        EmojiDataset(background="not-a-colour")


# ----------------------------------------------------------------------------- mnist
def test_mnist_items_and_disjoint_splits():
    train, validation = MNISTDataset(split="train"), MNISTDataset(split="validation")
    assert len(train) + len(validation) == 5000 and 300 < len(validation) < 700
    assert not image_keys(validation) & {to_uint8_image(train[i]["image"]).tobytes() for i in range(0, len(train), 3)}
    item = train[5]
    check_item(item, 32)
    assert item["caption"] == f"a handwritten digit {item['class_label']}" and item["human_label"] == str(item["class_label"])
    assert set(train.labels) == set(range(10))
    assert np.all(item["image"][:2] == -1.0), "zero padding from 28 to 32 px"
    check_item(MNISTDataset(size=64, split="validation", rgb=False)[0], 64, channels=1)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_from_idx_files_and_missing_error(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 12), ("t10k", 5)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10)
    train = FashionMNISTDataset(root=tmp_path, split="train")
    validation = FashionMNISTDataset(root=tmp_path, split="validation")
    assert (len(train), len(validation)) == (12, 5)
    check_item(train[7], 32)
    assert train[7]["human_label"] == "sneaker" and train[7]["caption"] == "a photo of a sneaker"
    assert train[8]["caption"] == "a photo of a bag"
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist.*root="):
        FashionMNISTDataset(root=tmp_path / "absent")
    (tmp_path / "broken").mkdir()
    write_idx(tmp_path / "broken" / "train-images-idx3-ubyte.gz", np.zeros((3, 28, 28)))
    with gzip.open(tmp_path / "broken" / "train-labels-idx1-ubyte.gz", "wb") as file:
        file.write(b"\x00\x00\x08\x01\x00\x00\x00\x09abc")
    with pytest.raises(ValueError, match="truncated"):
        FashionMNISTDataset(root=tmp_path / "broken")


# ----------------------------------------------------------------------------- photos
def test_photos_crops_and_splits():
    train = PhotosDataset(size=32, split="train", length=12, names=["coffee", "brick"], scale=0.25)
    validation = PhotosDataset(size=32, split="validation", length=12, names=["coffee", "brick"], scale=0.25)
    for dataset in (train, validation):
        for index in range(len(dataset)):
            check_item(dataset[index], 32)
    assert [validation[i]["human_label"] for i in range(2)] == ["coffee", "brick"]
    assert np.array_equal(validation[3]["image"], validation[3]["image"])
    torch.manual_seed(0)
    draws = [train[0]["image"] for _ in range(4)]
    assert any(not np.array_equal(draws[0], other) for other in draws[1:]), "training crops should be random"
    for train_region, validation_region, name in zip(train.regions, validation.regions, train.names):
        full_width = round(load_photo(name).shape[1] * 0.25)
        assert train_region.shape[1] + validation_region.shape[1] == full_width  # side by side, no overlap
    with pytest.raises(ValueError, match="unknown photo"):
        PhotosDataset(names=["eagle"])
    with pytest.raises(ValueError, match="too small"):
        PhotosDataset(size=128, names=["chelsea"], scale=0.5)


# ----------------------------------------------------------------------------- folder
def save_image(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_image_folder_with_classes_captions_and_splits(tmp_path):
    colors = {"cats": (200, 50, 50), "dogs": (50, 50, 200)}
    for name, color in colors.items():
        for index in range(6):
            save_image(tmp_path / name / f"{index}.{'png' if index % 2 else 'jpg'}", tuple(c + index for c in color))
    save_image(tmp_path / "dogs" / "nested" / "x.webp", (10, 200, 10))
    (tmp_path / "cats" / "0.txt").write_text("a red cat\n")
    (tmp_path / "captions.jsonl").write_text(json.dumps({"file": "dogs/1.png", "caption": "a blue dog"}) + "\n")
    train = ImageFolderDataset(tmp_path, size=16, split="train", validation_fraction=0.3)
    validation = ImageFolderDataset(tmp_path, size=16, split="validation", validation_fraction=0.3)
    assert len(train) + len(validation) == 13 and len(validation) >= 1
    assert not set(train.paths) & set(validation.paths)
    assert ImageFolderDataset(tmp_path, size=16, split="validation", validation_fraction=0.3).paths == validation.paths
    items = {path.relative_to(tmp_path).as_posix(): dataset[i] for dataset in (train, validation) for i, path in enumerate(dataset.paths)}
    for item in items.values():
        check_item(item, 16, uniform=True)
        assert item["human_label"] in colors and item["class_label"] == sorted(colors).index(item["human_label"])
    assert items["cats/0.jpg"]["caption"] == "a red cat"
    assert items["dogs/1.png"]["caption"] == "a blue dog"
    assert items["dogs/2.jpg"]["caption"] == ""  # some images have captions: the others get "", so batches collate
    assert items["dogs/nested/x.webp"]["human_label"] == "dogs"
    lazy = ImageFolderDataset(tmp_path, size=16, split="train", validation_fraction=0.3, preload=False, crop="random", flip_probability=0.5)
    assert lazy[0]["image"].shape == (16, 16, 3)


def test_image_folder_bad_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        ImageFolderDataset(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderDataset(tmp_path / "absent")
    folder = tmp_path / "mixed"
    for index in range(4):
        save_image(folder / f"{index}.png", (index * 60, 100, 100))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (folder / "empty.jpg").write_bytes(b"")
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        dataset = ImageFolderDataset(folder, size=8, validation_fraction=0.0)
    assert len(dataset) == 4 and "class_label" not in dataset[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="validation split .* holds no image"):
            ImageFolderDataset(folder, size=8, split="validation", validation_fraction=0.0)


# ----------------------------------------------------------------------------- original layouts
def test_celebahq_and_ffhq_layouts(tmp_path):
    data = tmp_path / "data"
    (data / "celebahq").mkdir(parents=True)
    for index in range(3):
        np.save(data / "celebahq" / f"imgHQ{index:05d}.npy", np.full((1, 3, 24, 24), 40 * index, np.uint8))
    (data / "celebahqtrain.txt").write_text("imgHQ00000.npy\nimgHQ00001.npy\n")
    (data / "celebahqvalidation.txt").write_text("imgHQ00002.npy\n")
    train = CelebAHQTrain(size=16, root=data / "celebahq")
    assert len(train) == 2 and train[1]["image"].shape == (16, 16, 3)
    assert np.allclose(train[1]["image"], 40 / 127.5 - 1, atol=1e-6)
    assert len(FacesHQ("celebahq", "validation", 16, root=data / "celebahq")) == 1
    for index in range(2):
        save_image(data / "ffhq" / f"{index:05d}.png", (100, 120, 140), (20, 20))
    (data / "ffhqvalidation.txt").write_text("00001.png\n")
    assert FFHQValidation(size=8, root=data / "ffhq")[0]["image"].shape == (8, 8, 3)
    with pytest.raises(FileNotFoundError, match="ffhqtrain.txt.*NVlabs/ffhq-dataset"):
        FacesHQ("ffhq", "train", root=data / "ffhq")
    (data / "ffhqtrain.txt").write_text("00000.png\n00007.png\n")
    with pytest.raises(FileNotFoundError, match="1 of 2 files"):
        FacesHQ("ffhq", "train", root=data / "ffhq")


def test_lsun_layout(tmp_path):
    lsun = tmp_path / "lsun"
    for index in range(3):
        save_image(lsun / "churches" / "sub" / f"{index}.webp", (30 * index, 90, 90), (30, 20))
    (lsun / "church_outdoor_train.txt").write_text("sub/0.webp\nsub/1.webp\n")
    (lsun / "church_outdoor_val.txt").write_text("sub/2.webp\n")
    train = LSUNChurchesTrain(size=16, data_root=lsun)
    assert len(train) == 2 and train[0]["image"].shape == (16, 16, 3) and train.flip_probability == 0.5
    assert len(LSUN("churches", "validation", 16, data_root=lsun)) == 1
    with pytest.raises(FileNotFoundError, match="bedrooms_train.txt.*ommer-lab.com/files/lsun.zip"):
        LSUN("bedrooms", data_root=lsun)


def test_imagenet_layout(tmp_path):
    root = tmp_path / "imagenet"
    for synset, color in (("n01440764", (200, 0, 0)), ("n01443537", (0, 0, 200))):
        save_image(root / "train" / synset / "a.JPEG", color)
        save_image(root / "train" / synset / "b.JPEG", color)
        save_image(root / "val" / synset / "c.JPEG", color)
    (root / "LOC_synset_mapping.txt").write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n")
    train = ImageNetTrain(config={"size": 16}, root=root)
    validation = ImageNet("validation", 16, root=root)
    assert len(train) == 4 and len(validation) == 2
    item = validation[1]
    assert item["class_label"] == 1 and item["synset"] == "n01443537" and item["human_label"].startswith("goldfish")
    assert item["caption"] == "a photo of a goldfish"
    check_item(train[0], 16, uniform=True)
    with pytest.raises(FileNotFoundError, match="train/<synset>"):
        ImageNet(root=tmp_path / "nothing")


# ----------------------------------------------------------------------------- masks
def test_random_masks_are_binary_seeded_and_cover_part_of_the_image():
    for make in (random_box_mask, random_stroke_mask, random_mask):
        first = make(64, 48, np.random.default_rng(3))
        assert first.shape == (64, 48, 1) and first.dtype == np.float32
        assert set(np.unique(first)) <= {0.0, 1.0}
        assert np.array_equal(first, make(64, 48, np.random.default_rng(3)))
        coverage = np.mean([make(64, 48, np.random.default_rng(seed)).mean() for seed in range(20)])
        assert 0.03 < coverage < 0.7, (make.__name__, coverage)
    with pytest.raises(ValueError, match="mask kind"):
        random_mask(8, 8, np.random.default_rng(0), kind="circle")


def test_inpainting_wrapper_adds_mask_and_masked_image():
    dataset = InpaintingDataset({"target": "ldm_lite.data.shapes.ShapesDataset", "params": {"split": "validation", "length": 8}})
    assert dataset.deterministic
    item = dataset[2]
    assert item["mask"].shape == (32, 32, 1) and item["masked_image"].shape == (32, 32, 3)
    fill = item["mask"][..., 0] == 1
    assert fill.any() and np.all(item["masked_image"][fill] == 0)
    assert np.array_equal(item["masked_image"][~fill], item["image"][~fill])
    assert np.array_equal(dataset[2]["mask"], item["mask"])
    assert np.array_equal(apply_mask(item["image"], item["mask"]), item["masked_image"])
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert batch["image"].shape == (4, 32, 32, 3) and batch["mask"].shape == (4, 32, 32, 1)
    assert isinstance(batch["caption"], list) and len(batch["caption"]) == 4


def test_inpainting_examples_on_disk():
    folder = ROOT / "data" / "inpainting_examples"
    images = sorted(p for p in folder.glob("*.png") if not p.stem.endswith("_mask"))
    assert len(images) >= 6
    for path in images:
        mask_path = path.with_name(f"{path.stem}_mask.png")
        with Image.open(path) as image, Image.open(mask_path) as mask:
            assert image.mode == "RGB" and mask.mode == "L" and image.size == mask.size
            assert image.size in ((64, 64), (128, 128))
            values = np.unique(np.asarray(mask))
            assert set(values) <= {0, 255} and len(values) == 2
        assert path.stat().st_size < 40_000 and mask_path.stat().st_size < 5_000


def test_mixture_concatenates_and_keeps_common_keys():
    from ldm_lite.data import MixtureDataset

    mixture = MixtureDataset([
        {"target": "ldm_lite.data.ShapesDataset", "params": {"size": 32, "split": "validation", "length": 5}},
        {"target": "ldm_lite.data.MNISTDataset", "params": {"split": "validation"}},
    ])
    assert len(mixture) == 5 + len(mixture.parts[1])
    first, last = mixture[0], mixture[len(mixture) - 1]
    assert set(first) == set(last) == {"image", "caption"}
    assert first["caption"] == mixture.parts[0][0]["caption"]
    assert last["caption"] == mixture.parts[1][len(mixture.parts[1]) - 1]["caption"]
