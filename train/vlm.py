"""Vision-language backbones for image suites (the spectrogram benchmark): tiny random-weight versions of
Qwen2.5-VL, LLaVA-NeXT (LLaVA 1.6) and InternVL 3 for CPU tests, and what differs between the families.

Same recipe as the tiny Omni thinkers of ``train/backbones.py``: a shrunken config, a tokenizer trained locally that
keeps the family's real special tokens and a chat template of the family's layout, the real processor classes of
transformers (``Qwen2_5_VLProcessor``, ``LlavaNextProcessor``, ``InternVLProcessor``), saved with
``save_pretrained`` under ``.cache/backbones/<name>`` and loaded back by ``load_backbone`` like a hub checkpoint.
Nothing touches the network.

What differs between families and is settled here, once, for training and evaluation alike:

- image budget (:func:`image_kwargs`): Qwen-VL takes a pixel budget (``media.min_pixels``/``max_pixels``); InternVL
  cuts the image into square tiles, at most ``media.max_pixels // tile area`` of them; LLaVA-NeXT picks the
  checkpoint's own resolution grid (``image_grid_pinpoints``), which a recipe does not change;
- LoRA targets: all three language models name their projections ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``,
  ``gate_proj``, ``up_proj``, ``down_proj`` under ``model.language_model``, so ``lora.towers: [language_model]``
  with the default targets adapts the language model of every family; the vision towers are ``visual`` (Qwen) and
  ``vision_tower`` (LLaVA-NeXT, InternVL), the projectors ``multi_modal_projector``;
- chat template: each checkpoint brings its own; the tiny ones mimic their family's layout (ChatML for Qwen and
  InternVL 3, ``[INST] ... [/INST]`` for LLaVA-NeXT on Mistral).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from train.backbones import (INTERNVL3, LLAVA_NEXT, QWEN25_VL, TINY_VLMS, OmniFamily, _build_tokenizer,
                             backbone_cache, save_tiny)


def image_kwargs(processor, media) -> dict:
    """The image processor's arguments that carry the recipe's image budget, for the processor's family."""
    image_processor = getattr(processor, "image_processor", None)
    name = type(image_processor).__name__
    if name.startswith("Qwen2VL"):
        # transformers 5.x reads the pixel budget from `size` (min_pixels/max_pixels kwargs are deprecated).
        return {"size": {"shortest_edge": media.min_pixels, "longest_edge": media.max_pixels}}
    if name.startswith("GotOcr2"):  # InternVL: square tiles of the vision tower's input size
        size = image_processor.size
        tile = int(size["height"]) * int(size["width"])
        return {"crop_to_patches": True, "max_patches": max(1, media.max_pixels // tile)}
    return {}  # LLaVA-NeXT: the checkpoint's resolution grid decides the tiles


def _template(user: tuple[str, str], assistant: tuple[str, str], image: str, generation: str) -> str:
    """A chat template: user turns wrapped in ``user``, assistant turns in ``assistant``, ``image`` where the
    content list puts an image. The generation prompt is a prefix of the rendered answer turn, so prompt tokens
    can be masked (train.inputs.chat_prompt_and_completion)."""
    return (
        "{% for message in messages %}"
        f"{{% if message['role'] == 'user' %}}{{{{ {user[0]!r} }}}}{{% else %}}{{{{ {assistant[0]!r} }}}}{{% endif %}}"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for c in message['content'] %}"
        "{% if c['type'] == 'text' %}{{ c['text'] }}"
        f"{{% elif c['type'] in ['image', 'image_url'] %}}{{{{ {image!r} }}}}"
        "{% endif %}{% endfor %}{% endif %}"
        f"{{% if message['role'] == 'user' %}}{{{{ {user[1]!r} }}}}{{% else %}}{{{{ {assistant[1]!r} }}}}{{% endif %}}"
        "{% endfor %}"
        f"{{% if add_generation_prompt %}}{{{{ {generation!r} }}}}{{% endif %}}"
    )


def _qwen_processor(tokenizer):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    # Small pixel budgets for CPU (as the tiny Omni processors); a spectrogram image of 448x336 becomes ~10x8 merged
    # patches at most 256*28*28 pixels.
    size = {"shortest_edge": 4 * 28 * 28, "longest_edge": 64 * 28 * 28}
    image_processor = Qwen2VLImageProcessor(patch_size=14, temporal_patch_size=2, merge_size=2, size=size)
    video_processor = Qwen2VLVideoProcessor(patch_size=14, temporal_patch_size=2, merge_size=2, size=size)
    return Qwen2_5_VLProcessor(image_processor=image_processor, video_processor=video_processor, tokenizer=tokenizer,
                               chat_template=tokenizer.chat_template)


def _qwen_config(tokenizer):
    from transformers import Qwen2_5_VLConfig

    tok = tokenizer.convert_tokens_to_ids
    text = dict(_text_config(tokenizer), bos_token_id=tok("<|endoftext|>"),
                # mrope splits the rotary half-dim (head_dim 16 -> 8) into temporal/height/width sections.
                rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [2, 3, 3]})
    vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2, window_size=112, out_hidden_size=text["hidden_size"],
                  fullatt_block_indexes=[0])
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=tok("<|image_pad|>"),
                            video_token_id=tok("<|video_pad|>"), vision_start_token_id=tok("<|vision_start|>"),
                            vision_end_token_id=tok("<|vision_end|>"))


def _text_config(tokenizer) -> dict:
    """The tiny language model every family shares: 2 layers, hidden 64, grouped-query attention."""
    return dict(vocab_size=(len(tokenizer) + 63) // 64 * 64, hidden_size=64, intermediate_size=128,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)


# LLaVA-NeXT: a 56-pixel vision tower (4x4 patches) and its any-resolution grid of up to 2x2 tiles.
_LLAVA_TILE, _LLAVA_PATCH = 56, 14
_LLAVA_GRID = [[56, 56], [56, 112], [112, 56], [112, 112]]


def _llava_processor(tokenizer):
    from transformers import LlavaNextImageProcessor, LlavaNextProcessor

    tokenizer.chat_template = _template(("[INST] ", " [/INST]"), ("", tokenizer.eos_token), "<image>\n", "")
    image_processor = LlavaNextImageProcessor(size={"shortest_edge": _LLAVA_TILE},
                                              crop_size={"height": _LLAVA_TILE, "width": _LLAVA_TILE},
                                              image_grid_pinpoints=_LLAVA_GRID)
    # CLIP's class token is one more feature than patches; the "default" strategy drops it again.
    return LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=_LLAVA_PATCH,
                              vision_feature_select_strategy="default", num_additional_image_tokens=1,
                              chat_template=tokenizer.chat_template)


def _llava_config(tokenizer):
    from transformers import LlavaNextConfig

    vision = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, image_size=_LLAVA_TILE, patch_size=_LLAVA_PATCH, projection_dim=32)
    text = dict(_text_config(tokenizer), model_type="llama")
    return LlavaNextConfig(vision_config=vision, text_config=text,
                           image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                           image_grid_pinpoints=_LLAVA_GRID, image_seq_length=(_LLAVA_TILE // _LLAVA_PATCH) ** 2,
                           vision_feature_layer=-2, vision_feature_select_strategy="default")


# InternVL 3: 56-pixel tiles of 4x4 patches, pixel-shuffled by 0.5 into 4 image tokens per tile.
_INTERNVL_TILE, _INTERNVL_PATCH = 56, 14
_INTERNVL_TOKENS = (_INTERNVL_TILE // _INTERNVL_PATCH) ** 2 // 4


def _internvl_processor(tokenizer):
    from transformers import GotOcr2ImageProcessor, InternVLProcessor, InternVLVideoProcessor

    tokenizer.chat_template = _template(("<|im_start|>user\n", "<|im_end|>\n"),
                                        ("<|im_start|>assistant\n", "<|im_end|>\n"), "<IMG_CONTEXT>\n",
                                        "<|im_start|>assistant\n")
    size = {"height": _INTERNVL_TILE, "width": _INTERNVL_TILE}
    image_processor = GotOcr2ImageProcessor(size=size, crop_to_patches=True, min_patches=1, max_patches=4)
    return InternVLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                             video_processor=InternVLVideoProcessor(size=size), image_seq_length=_INTERNVL_TOKENS,
                             chat_template=tokenizer.chat_template)


def _internvl_config(tokenizer):
    from transformers import InternVLConfig

    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  image_size=[_INTERNVL_TILE] * 2, patch_size=[_INTERNVL_PATCH] * 2)
    text = dict(_text_config(tokenizer), model_type="qwen2")
    return InternVLConfig(vision_config=vision, text_config=text, image_seq_length=_INTERNVL_TOKENS,
                          image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), downsample_ratio=0.5)


# name -> (family, processor builder, config builder)
_BUILDERS: dict[str, tuple[OmniFamily, Callable, Callable]] = {
    "tiny-qwen2.5-vl": (QWEN25_VL, _qwen_processor, _qwen_config),
    "tiny-llava-next": (LLAVA_NEXT, _llava_processor, _llava_config),
    "tiny-internvl3": (INTERNVL3, _internvl_processor, _internvl_config),
}


def build_tiny_vlm(name: str = "tiny-qwen2.5-vl", out_dir: str | Path | None = None, seed: int = 0) -> Path:
    """Build a tiny random-weight vision-language model and its processor, save both with ``save_pretrained``;
    returns the folder.

    Raises:
        KeyError: a name that is not a tiny VLM.
    """
    import torch
    import transformers

    if name not in TINY_VLMS:
        raise KeyError(f"{name!r} is not a tiny vision-language model; choose one of {sorted(TINY_VLMS)}")
    family, make_processor, make_config = _BUILDERS[name]
    out = Path(out_dir) if out_dir is not None else backbone_cache() / name
    tokenizer = _build_tokenizer(family)
    processor = make_processor(tokenizer)
    torch.manual_seed(seed)
    model = getattr(transformers, family.model_class)(make_config(tokenizer))
    return save_tiny(model, processor, tokenizer, name, out)
