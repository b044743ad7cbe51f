"""The flagship's held-out prompts are test-split captions of the real clip art, never training captions."""
import pytest

from ldm_lite.data.clipart import HELDOUT_PROMPTS, OPENCLIPART_ROOT, ClipartDataset


@pytest.mark.skipif(not OPENCLIPART_ROOT.is_dir(), reason="the clip-art packages are not installed (make clipart-deps)")
def test_heldout_prompts_are_test_captions_only():
    captions = {split: set(ClipartDataset(size=64, split=split).captions) for split in ("train", "validation", "test")}
    assert len(set(HELDOUT_PROMPTS)) == 16
    for prompt in HELDOUT_PROMPTS:
        assert prompt in captions["test"] and prompt not in captions["train"] | captions["validation"], prompt
