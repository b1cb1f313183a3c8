"""Suite ``spectrogram_mcq`` end to end on CPU with the tiny random Qwen2.5-VL (and the tiny Omni for audio)."""

from __future__ import annotations

import pytest

from data_builders.spectrogram_mcq import build
from eval.context import EvalContext, PredictionCache
from eval.suites import get_suite
from recipes.media import MediaSettings


@pytest.fixture(scope="module")
def items_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("smcq_suite")
    build(out, words=40, seed=0, workers=1, progress=False)
    return out / "items.jsonl"


def _ctx(model, processor, tmp_path, items_path, **options):
    return EvalContext(checkpoint=tmp_path, fingerprint="tiny", model=model, processor=processor,
                       media=MediaSettings(), out_dir=tmp_path, cache=PredictionCache(tmp_path / "cache.jsonl"),
                       options={"items": str(items_path), **options})


def test_tiny_vlm_loads_by_name_with_real_classes(tmp_path):
    from train.backbones import load_backbone

    model, processor = load_backbone("tiny-qwen2.5-vl", cache_dir=tmp_path)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    vocab = processor.tokenizer.get_vocab()
    for tok in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|im_start|>", "<|im_end|>",
                "<|endoftext|>"):
        assert tok in vocab, tok


def test_tiny_vlm_scores_all_conditions_and_ablations(tmp_path, items_path):
    from train.backbones import load_backbone

    model, processor = load_backbone("tiny-qwen2.5-vl", cache_dir=tmp_path / "bb")
    ctx = _ctx(model, processor, tmp_path, items_path, limit=2)
    images = []
    model.model.visual.register_forward_hook(lambda *_: images.append(1))
    res = get_suite("spectrogram_mcq")(ctx)
    # Each item's three images (spectrogram, with waveform, blank) are encoded once for its graphemic and phonemic
    # questions together.
    assert len(images) == 2 * 3
    assert set(res["conditions"]) == {"graphemic/spectrogram", "graphemic/spectrogram+waveform",
                                      "phonemic/spectrogram", "phonemic/spectrogram+waveform"}
    assert set(res["ablations"]) == {"graphemic/blank", "phonemic/blank", "graphemic/none", "phonemic/none"}
    for section in ("conditions", "ablations"):
        for name, m in res[section].items():
            assert m["n"] == 2 and 0 <= m["accuracy"] <= 1 and m["ci95"][0] <= m["accuracy"] <= m["ci95"][1], name
            assert m["mean_ped_random"] > 0 and m["mean_ped_selected"] >= 0
    assert "logistic_options_only" in res["baselines"] and res["settings"]["params"]["n_fft"] == 128
    assert (tmp_path / "spectrogram_mcq_predictions.jsonl").is_file()
    # the image is really seen: blank and spectrogram inputs give different scores for the same item
    rows = [r for r in ctx.cache._data.values() if isinstance(r, dict)]  # predictions, not what the model takes
    assert len(rows) == 2 * 8 and len({tuple(r["logprob"]) for r in rows}) > 8
    # predictions are cached: a second run computes nothing
    ctx2 = _ctx(model, processor, tmp_path, items_path, limit=2)
    assert get_suite("spectrogram_mcq")(ctx2)["conditions"] == res["conditions"] and ctx2.cache.misses == 0


def test_omni_model_hears_the_audio_ablation(tmp_path, items_path, tiny_backbones):
    from train.backbones import load_backbone

    model, processor = load_backbone(str(tiny_backbones["tiny-qwen2.5-omni"]))
    res = get_suite("spectrogram_mcq")(_ctx(model, processor, tmp_path, items_path, limit=1))
    assert {"graphemic/audio", "phonemic/audio"} <= set(res["ablations"]) and res["settings"]["omni"]
    assert res["ablations"]["graphemic/audio"]["n"] == 1


def test_suite_without_items_option_says_how_to_build(tmp_path):
    ctx = EvalContext(checkpoint=tmp_path, fingerprint="x", model=None, processor=None, media=MediaSettings(),
                      out_dir=tmp_path, cache=PredictionCache(tmp_path / "c.jsonl"))
    with pytest.raises(ValueError, match="spectrogram-mcq --out"):
        get_suite("spectrogram_mcq")(ctx)
