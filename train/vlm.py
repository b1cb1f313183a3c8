"""A tiny random-weight Qwen2.5-VL for CPU tests of image suites (the spectrogram benchmark, issue #6).

Same recipe as the tiny Omni thinkers of ``train/backbones.py``: a shrunken config, a tokenizer trained locally that
keeps the real special tokens (``<|vision_start|>``, ``<|vision_end|>``, ``<|image_pad|>``, ``<|video_pad|>``,
``<|im_start|>``, ``<|im_end|>``, ``<|endoftext|>``) and a ChatML template, the real processor classes
(``Qwen2_5_VLProcessor`` with ``Qwen2VLImageProcessor`` and ``Qwen2VLVideoProcessor``), saved with
``save_pretrained`` under ``.cache/backbones/tiny-qwen2.5-vl`` and loaded back by ``load_backbone`` like a hub
checkpoint. Nothing touches the network.
"""

from __future__ import annotations

from pathlib import Path

from train.backbones import QWEN25_VL, TINY_VLMS, _build_tokenizer, backbone_cache, save_tiny


def _processor(tokenizer):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    # Small pixel budgets for CPU (as the tiny Omni processors); a spectrogram image of 448x336 becomes ~10x8 merged
    # patches at most 256*28*28 pixels.
    size = {"shortest_edge": 4 * 28 * 28, "longest_edge": 64 * 28 * 28}
    image_processor = Qwen2VLImageProcessor(patch_size=14, temporal_patch_size=2, merge_size=2, size=size)
    video_processor = Qwen2VLVideoProcessor(patch_size=14, temporal_patch_size=2, merge_size=2, size=size)
    return Qwen2_5_VLProcessor(image_processor=image_processor, video_processor=video_processor, tokenizer=tokenizer,
                               chat_template=tokenizer.chat_template)


def _config(tokenizer):
    from transformers import Qwen2_5_VLConfig

    tok = tokenizer.convert_tokens_to_ids
    vocab = (len(tokenizer) + 63) // 64 * 64
    hidden = 64
    text = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                # mrope splits the rotary half-dim (head_dim 16 -> 8) into temporal/height/width sections.
                rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [2, 3, 3]},
                bos_token_id=tok("<|endoftext|>"), pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id)
    vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2, window_size=112, out_hidden_size=hidden, fullatt_block_indexes=[0])
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=tok("<|image_pad|>"),
                            video_token_id=tok("<|video_pad|>"), vision_start_token_id=tok("<|vision_start|>"),
                            vision_end_token_id=tok("<|vision_end|>"))


def build_tiny_vlm(name: str = "tiny-qwen2.5-vl", out_dir: str | Path | None = None, seed: int = 0) -> Path:
    """Build the tiny Qwen2.5-VL and its processor, save both with ``save_pretrained``; returns the folder.

    Raises:
        KeyError: a name that is not a tiny VLM.
    """
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    if name not in TINY_VLMS:
        raise KeyError(f"{name!r} is not a tiny vision-language model; choose one of {sorted(TINY_VLMS)}")
    out = Path(out_dir) if out_dir is not None else backbone_cache() / name
    tokenizer = _build_tokenizer(QWEN25_VL)
    processor = _processor(tokenizer)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(_config(tokenizer))
    return save_tiny(model, processor, tokenizer, name, out)
