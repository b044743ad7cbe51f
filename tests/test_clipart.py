"""The clip-art dataset on a small fixture tree laid out like the Debian packages (never the full
apt data): caption rules, junk and duplicate filters, categories, splits and the emoji fallback."""
from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ldm_lite.data import clipart
from ldm_lite.data.clipart import (
    CATEGORIES, INSTALL_HINT, ClipartDataset, build_clipart_cache, emoji_caption, emoji_coarse_category,
    openclipart_caption, split_of, tuxpaint_caption, with_article,
)


@pytest.fixture(scope="module")
def english_words() -> frozenset[str]:
    return clipart._english_words()


@pytest.fixture(scope="module", autouse=True)
def isolated_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LDM_LITE_CACHE", str(tmp_path_factory.mktemp("clipart_cache")))
        yield


def drawing(path: Path, colour: str, shape: str = "ellipse", extent: int = 80, size: int = 120, transparent: bool = True,
            inner: str | None = None) -> None:
    """An RGBA PNG with one filled shape of `extent` px (and an `inner` dot) on a transparent (or white) canvas."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0) if transparent else (255, 255, 255, 255))
    box = ((size - extent) // 2, (size - extent) // 2, (size + extent) // 2, (size + extent) // 2)
    getattr(ImageDraw.Draw(image), shape)(box, fill=colour)
    if inner:
        ImageDraw.Draw(image).ellipse((size // 2 - 10, size // 2 - 30, size // 2 + 10, size // 2 - 10), fill=inner)
    image.save(path)


@pytest.fixture(scope="module")
def package_roots(tmp_path_factory) -> tuple[Path, Path]:
    openclipart_root = tmp_path_factory.mktemp("openclipart")
    tuxpaint_root = tmp_path_factory.mktemp("tuxpaint")
    drawing(openclipart_root / "animals/tiger_gerald_g._01.png", "orange")
    drawing(openclipart_root / "food/fruit/red_apple_benji_park_01.png", "red")
    drawing(openclipart_root / "food/fruit/red_apple_benji_park_02.png", "red")  # an exact duplicate
    drawing(openclipart_root / "transportation/bus_romus_01.png", "yellow", "rectangle")
    drawing(openclipart_root / "plants/cactus_linda_kim_01.png", "green", "rectangle", transparent=False, inner="pink")
    drawing(openclipart_root / "office/blank_paper_01.png", (0, 0, 0, 0))  # nothing drawn
    drawing(openclipart_root / "tools/hammer_01.png", "black", extent=8)  # too small to be a drawing
    drawing(openclipart_root / "shapes/stars/star_5pt04step.png", "gold")
    drawing(openclipart_root / "signs_and_symbols/flags/europe/albania.png", "crimson", "rectangle")
    drawing(openclipart_root / "signs_and_symbols/flags/europe/france/limousin.png", "blue", "rectangle")
    drawing(openclipart_root / "food/pera_architetto_francesc_01.png", "olive")
    drawing(tuxpaint_root / "animals/birds/owl.png", "brown")
    (tuxpaint_root / "animals/birds/owl.txt").write_text("An owl.\nUn hibou.\n", encoding="utf-8")
    drawing(tuxpaint_root / "symbols/alphabets/english/a.png", "black")
    (tuxpaint_root / "symbols/alphabets/english/a.txt").write_text("The letter A.\n", encoding="utf-8")
    drawing(tuxpaint_root / "vehicles/no_description.png", "blue")  # no .txt: no caption
    return openclipart_root, tuxpaint_root


def test_openclipart_captions_cut_authors_numbers_and_series(english_words):
    assert openclipart_caption("science/chemistry_flask_matthew__02.png", english_words) == "a chemistry flask"
    assert openclipart_caption("animals/mammals/dog_on_leash_gerald_g._01.png", english_words) == "a dog on leash"
    assert openclipart_caption("electronics/bulb/light_bulb_karl_bartel_01.png", english_words) == "a light bulb"
    assert openclipart_caption("unsorted/zaino_per_montagna.png", english_words) is None  # not English
    assert openclipart_caption("buildings/homes/home10.png", english_words) == "a home"  # digits split off
    assert openclipart_caption("recreation/sports/8ball_form_jarno_vasama.png", english_words) == "a ball"
    assert openclipart_caption("signs_and_symbols/flags/europe/albania.png", english_words) == "the flag of albania"
    assert openclipart_caption("signs_and_symbols/flags/europe/france/corse.png", english_words) is None  # regional
    assert openclipart_caption("people/people_juliane_krug_01c.png", english_words) is None  # generic
    assert openclipart_caption("food/fruit/text_label_01.png", english_words) is None  # text, not an object
    assert openclipart_caption("transportation/roadsigns/staggered.png", english_words) is None


def test_tuxpaint_and_emoji_captions():
    assert tuxpaint_caption("A Sumatran tiger.") == "a Sumatran tiger"
    assert tuxpaint_caption("A chocolate easter egg. Yum!") == "a chocolate easter egg"
    assert tuxpaint_caption("US quarter.") == "US quarter"  # an acronym keeps its capitals
    assert emoji_caption("red apple") == "a red apple" and emoji_caption("flag of France") == "the flag of France"
    assert emoji_caption("eight o’clock") == "a clock showing eight o’clock"
    assert with_article("owl") == "an owl" and with_article("euro coin") == "a euro coin"
    assert with_article("cherries") == "cherries" and with_article("busts in silhouette") == "busts in silhouette"
    assert with_article("men wrestling") == "men wrestling" and with_article("lens") == "a lens"


def test_emoji_categories():
    assert emoji_coarse_category("grinning face", "Smileys & Emotion") == "face"
    assert emoji_coarse_category("red heart", "Smileys & Emotion") == "symbol"
    assert emoji_coarse_category("tulip", "Animals & Nature") == "plant"
    assert emoji_coarse_category("dog face", "Animals & Nature") == "animal"
    assert emoji_coarse_category("bus", "Travel & Places") == "vehicle"
    assert emoji_coarse_category("castle", "Travel & Places") == "building"
    assert emoji_coarse_category("flag of Peru", "Flags") == "flag"


def test_split_is_fixed_by_the_key_and_has_the_stated_fractions():
    assert split_of("openclipart/animals/tiger.png") == split_of("openclipart/animals/tiger.png")
    counts = collections.Counter(split_of(f"key/{index}") for index in range(20_000))
    assert abs(counts["test"] / 20_000 - clipart.TEST_FRACTION) < 0.01
    assert abs(counts["validation"] / 20_000 - clipart.VALIDATION_FRACTION) < 0.01


def test_build_keeps_objects_and_drops_junk_blank_tiny_and_duplicates(package_roots):
    openclipart_root, tuxpaint_root = package_roots
    with np.load(build_clipart_cache(64, openclipart_root, tuxpaint_root)) as cache:
        keys, captions = [str(k) for k in cache["keys"]], [str(c) for c in cache["captions"]]
        images, categories, counts = cache["images"], cache["categories"], cache["counts"]
    drawn = {key: caption for key, caption in zip(keys, captions) if not key.startswith("twemoji/")}
    assert drawn == {
        "tuxpaint/animals/birds/owl.png": "an owl",
        "openclipart/animals/tiger_gerald_g._01.png": "a tiger",
        "openclipart/food/fruit/red_apple_benji_park_01.png": "a red apple",
        "openclipart/transportation/bus_romus_01.png": "a bus",
        "openclipart/plants/cactus_linda_kim_01.png": "a cactus",
        "openclipart/signs_and_symbols/flags/europe/albania.png": "the flag of albania",
    }
    category = {key: CATEGORIES[int(c)] for key, c in zip(keys, categories)}
    assert category["openclipart/transportation/bus_romus_01.png"] == "vehicle"
    assert category["openclipart/plants/cactus_linda_kim_01.png"] == "plant"
    assert category["tuxpaint/animals/birds/owl.png"] == "animal"
    assert images.shape[1:] == (64, 64, 3) and images.dtype == np.uint8
    apple = images[keys.index("openclipart/food/fruit/red_apple_benji_park_01.png")]
    assert tuple(apple[0, 0]) == (255, 255, 255) and tuple(apple[32, 32]) == (255, 0, 0)  # on white, centred
    assert '"blank": 1' in str(counts) and '"unreadable, too large or tiny": 1' in str(counts)


def test_dataset_items_splits_and_source_filter(package_roots):
    openclipart_root, tuxpaint_root = package_roots
    splits = {split: ClipartDataset(64, split, openclipart_root=openclipart_root, tuxpaint_root=tuxpaint_root)
              for split in ("train", "validation", "test")}
    all_keys = [key for dataset in splits.values() for key in dataset.keys]
    assert len(all_keys) == len(set(all_keys))
    for split, dataset in splits.items():
        assert all(split_of(key) == split for key in dataset.keys)
    item = splits["train"][0]
    assert set(item) == {"image", "caption", "class_label", "human_label", "source", "licence"}
    assert item["image"].shape == (64, 64, 3) and item["image"].min() >= -1 and item["image"].max() <= 1
    assert item["human_label"] == CATEGORIES[item["class_label"]]
    only_drawings = [ClipartDataset(64, split, sources=("openclipart", "tuxpaint"), openclipart_root=openclipart_root,
                                    tuxpaint_root=tuxpaint_root) for split in ("train",)]
    assert set(only_drawings[0].sources) <= {"openclipart", "tuxpaint"}
    with pytest.raises(ValueError, match="split must be one of"):
        ClipartDataset(64, "holdout")


def test_missing_packages_fall_back_to_emoji_with_one_line(tmp_path, capsys):
    dataset = ClipartDataset(64, "test", openclipart_root=tmp_path / "none", tuxpaint_root=tmp_path / "none2")
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and INSTALL_HINT in message and "using twemoji" in message
    assert set(dataset.sources) == {"twemoji"} and len(dataset) > 100
