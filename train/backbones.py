"""Backbones: tiny random-weight Qwen-Omni thinkers built offline, and one loader for tiny and real checkpoints.

Recipes name a backbone by hub id (``Qwen/Qwen2.5-Omni-7B``), by local path, or by a reserved tiny name
(``tiny-qwen2.5-omni``, ``tiny-qwen3-omni``). Tiny ones are built from shrunken configs with a tokenizer trained
locally that keeps the real special-token names and a chat template, wrapped in the real processor classes
(Whisper feature extractor, Qwen2-VL image and video processors), saved with ``save_pretrained`` under
``.cache/backbones/`` and loaded back through ``from_pretrained`` exactly like a hub checkpoint. Nothing here
touches the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any



def backbone_cache() -> Path:
    """Where tiny backbones are built: ``<cache>/backbones`` (:func:`recipes.paths.cache_dir`: ``$HARKEN_CACHE``,
    else ``<project root>/.cache``), read when called so ``--root`` applies."""
    from recipes.paths import cache_dir

    return cache_dir() / "backbones"


@dataclass(frozen=True)
class OmniFamily:
    """What differs between Qwen-Omni generations: classes and the names of their special tokens."""

    name: str
    model_class: str
    config_class: str
    processor_class: str
    tokens: dict[str, str]  # role -> token text, as in the hub tokenizer's extra_special_tokens
    other_special: tuple[str, ...]


QWEN25_OMNI = OmniFamily(
    name="qwen2.5-omni",
    model_class="Qwen2_5OmniThinkerForConditionalGeneration",
    config_class="Qwen2_5OmniThinkerConfig",
    processor_class="Qwen2_5OmniProcessor",
    tokens={
        "image_token": "<|IMAGE|>", "video_token": "<|VIDEO|>", "audio_token": "<|AUDIO|>",
        "vision_bos_token": "<|vision_bos|>", "vision_eos_token": "<|vision_eos|>",
        "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>",
    },
    other_special=("<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_pad|>"),
)
QWEN3_OMNI = OmniFamily(
    name="qwen3-omni",
    model_class="Qwen3OmniMoeThinkerForConditionalGeneration",
    config_class="Qwen3OmniMoeThinkerConfig",
    processor_class="Qwen3OmniMoeProcessor",
    tokens={
        "image_token": "<|image_pad|>", "video_token": "<|video_pad|>", "audio_token": "<|audio_pad|>",
        "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>",
        "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>",
    },
    other_special=("<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|vision_pad|>",
                   "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>", "<tts_text_bos_single>"),
)

# Vision-language (no audio) family, for the spectrogram benchmark: images only, built by train/vlm.py.
QWEN25_VL = OmniFamily(
    name="qwen2.5-vl",
    model_class="Qwen2_5_VLForConditionalGeneration",
    config_class="Qwen2_5_VLConfig",
    processor_class="Qwen2_5_VLProcessor",
    tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"},
    other_special=("<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|vision_pad|>"),
)

# LLaVA-NeXT (LLaVA 1.6) and InternVL 3 as transformers ports them (image-text-to-text classes; hub ids such as
# llava-hf/llava-v1.6-mistral-7b-hf and OpenGVLab/InternVL3-8B-hf). Images only, built by train/vlm.py.
LLAVA_NEXT = OmniFamily(
    name="llava-next",
    model_class="LlavaNextForConditionalGeneration",
    config_class="LlavaNextConfig",
    processor_class="LlavaNextProcessor",
    tokens={"image_token": "<image>"},
    other_special=(),
)
INTERNVL3 = OmniFamily(
    name="internvl3",
    model_class="InternVLForConditionalGeneration",
    config_class="InternVLConfig",
    processor_class="InternVLProcessor",
    tokens={"context_image_token": "<IMG_CONTEXT>", "start_image_token": "<img>", "end_image_token": "</img>",
            "video_token": "<video>"},
    other_special=(),
)

# Reserved names a recipe may use for the offline tiny backbones.
TINY_BACKBONES: dict[str, OmniFamily] = {"tiny-qwen2.5-omni": QWEN25_OMNI, "tiny-qwen3-omni": QWEN3_OMNI,
                                         "tiny-qwen2.5-omni-listen": QWEN25_OMNI}


@dataclass(frozen=True)
class TinySize:
    """Widths and depths of a tiny thinker, and the audio window its feature extractor pads every waveform to."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    mrope_section: tuple[int, int, int] = (2, 3, 3)  # sums to head_dim / 2
    audio_layers: int = 1
    audio_width: int = 32
    vision_depth: int = 1
    vision_width: int = 32
    audio_chunk_s: int = 30


# The default tiny size exercises the machinery; "-listen" is big enough to learn the synthetic "listen" world on
# a CPU in minutes (its clips are 5 s long, so a 10 s audio window loses nothing and extracts features 3x faster).
TINY_SIZES: dict[str, TinySize] = {
    "tiny-qwen2.5-omni-listen": TinySize(hidden=96, layers=3, heads=4, kv_heads=2, intermediate=256,
                                         mrope_section=(4, 4, 4), audio_layers=2, audio_width=64, vision_depth=2,
                                         vision_width=64, audio_chunk_s=10),
}
# Tiny vision-language models (train/vlm.py); kept apart because they have no audio tower.
TINY_VLMS: dict[str, OmniFamily] = {"tiny-qwen2.5-vl": QWEN25_VL, "tiny-llava-next": LLAVA_NEXT,
                                    "tiny-internvl3": INTERNVL3}

# Text the tiny tokenizer's BPE merges are learnt from: the vocabulary of Harken's prompts and answers, so that
# tiny-model sequences stay short. The merges do not matter for correctness, only for sequence length.
_CORPUS = """
Watch this video and listen to its audio carefully. Are the audio and video synchronised? If not, is the audio
delayed or early, and by how many seconds? Is the sound present, and does it match what you see?
The audio and video are in sync. The sound is delayed by about 2.1 seconds: the impact is seen at 2.5 s but heard
at 4.6 s. The audio is early. There is no sound at all; the clip is silent. The sound does not match the visible
event: I hear a metallic clang, but the video shows a rubber ball landing. A dull low thud. A hollow wooden knock.
A bright glassy clink. Which option describes the audio? Answer with the letter of the option. A B C D yes no
the a an of to in is it that was for on are with as at be this from or by one had not but what all were when we
there can your which their said if do will each about how up out them then she many some so these would other
into has more her two like him see time could no make than first been its who now people my made over did down
only way find use may water long little very after words called just where most know get through back much go
good new write our me man too any day same right look think also around another came come work three word must
because does part even place well such here take why help put different away again off went old number great tell
men say small every found still between name should home big give air line set own under read last never us left
end along while might next sound below saw something thought both few those always looked show large often together
asked house world going want school important until form food keep children feet land side without boy once animal
life enough took sometimes four head above kind began almost live page got earth need far hand high year mother
light parts country father let night following picture being study second eyes soon times story boys since white
days ever paper hard near sentence better best across during today others however sure means knew its try told
young miles sun ways thing whole hear example heard several change answer room sea against top turned learned point
city play toward five using himself usually ship sheep shop chip spectrogram waveform listen speech word spoken
user assistant system video audio image hello
0 1 2 3 4 5 6 7 8 9 0.5 1.0 1.5 2.0 2.5 3.0 seconds late early synced silent mismatched delayed
"""


def _build_tokenizer(family: OmniFamily, vocab_size: int = 1024):
    """A byte-level BPE tokenizer in the Qwen2 format with the family's special tokens and chat template."""
    import json

    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    vocab = state["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *family.tokens.values(), *family.other_special]
    tok = Qwen2Tokenizer(
        vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens=dict(family.tokens),
    )
    tok.add_special_tokens({"additional_special_tokens": [s for s in specials if s not in tok.get_vocab()]})
    # Qwen layouts get ChatML here; the other families' templates come with their processors (train/vlm.py).
    tok.chat_template = _chat_template(family) if "vision_bos_token" in family.tokens else None
    return tok


def _chat_template(family: OmniFamily) -> str:
    """Qwen-Omni's ChatML layout: media placeholders where the content list puts them."""
    t = family.tokens
    video = t["vision_bos_token"] + t["video_token"] + t["vision_eos_token"]
    image = t["vision_bos_token"] + t["image_token"] + t["vision_eos_token"]
    # Vision-language families have no audio tokens: an audio item then renders as nothing.
    audio = t["audio_bos_token"] + t["audio_token"] + t["audio_eos_token"] if "audio_token" in t else ""
    return (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' }}"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for c in message['content'] %}"
        "{% if c['type'] == 'text' %}{{ c['text'] }}"
        f"{{% elif c['type'] in ['video', 'video_url'] %}}{video}"
        f"{{% elif c['type'] in ['image', 'image_url'] %}}{image}"
        f"{{% elif c['type'] in ['audio', 'audio_url'] %}}{audio}"
        "{% endif %}{% endfor %}{% endif %}"
        "{{ '<|im_end|>\\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )


def _build_processor(family: OmniFamily, tokenizer, dims: TinySize = TinySize()):
    import transformers
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor, WhisperFeatureExtractor

    patch = 14 if family is QWEN25_OMNI else 16
    # Small pixel budgets by default for CPU; the recipe's media block sets the real ones at call time.
    size = {"shortest_edge": 4 * 28 * 28, "longest_edge": 256 * 28 * 28}
    image_processor = Qwen2VLImageProcessor(patch_size=patch, temporal_patch_size=2, merge_size=2, size=size)
    video_processor = Qwen2VLVideoProcessor(patch_size=patch, temporal_patch_size=2, merge_size=2, size=size)
    # chunk_length 30 s instead of the release's 300 s: the processor pads every waveform to it when called on its
    # own (train.inputs.encode pads to the batch's own length instead). Real checkpoints keep their own.
    feature_extractor = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160,
                                                chunk_length=dims.audio_chunk_s, n_fft=400)
    cls = getattr(transformers, family.processor_class)
    return cls(image_processor=image_processor, video_processor=video_processor,
               feature_extractor=feature_extractor, tokenizer=tokenizer, chat_template=tokenizer.chat_template)


def _tiny_config(family: OmniFamily, tokenizer, size: TinySize = TinySize()):
    import transformers

    ids = {role: tokenizer.convert_tokens_to_ids(tok) for role, tok in family.tokens.items()}
    vocab = len(tokenizer)
    vocab = (vocab + 63) // 64 * 64
    hidden, heads = size.hidden, size.heads
    text = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=size.intermediate,
                num_hidden_layers=size.layers, num_attention_heads=heads, num_key_value_heads=size.kv_heads,
                max_position_embeddings=4096,
                # mrope splits the rotary half-dim (head_dim 16 -> 8) into temporal/height/width sections.
                rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0,
                                 "mrope_section": list(size.mrope_section)},
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    audio = dict(num_mel_bins=128, encoder_layers=size.audio_layers, encoder_attention_heads=2,
                 encoder_ffn_dim=2 * size.audio_width, d_model=size.audio_width, output_dim=hidden,
                 max_source_positions=1500)
    common = dict(image_token_id=ids["image_token"], video_token_id=ids["video_token"],
                  audio_token_id=ids["audio_token"], audio_start_token_id=ids["audio_bos_token"],
                  vision_start_token_id=ids["vision_bos_token"],
                  user_token_id=tokenizer.convert_tokens_to_ids("user") if "user" in tokenizer.get_vocab() else 0)
    if family is QWEN25_OMNI:
        vision = dict(depth=size.vision_depth, hidden_size=size.vision_width, intermediate_size=2 * size.vision_width,
                      num_heads=2, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2, window_size=112, out_hidden_size=hidden,
                      fullatt_block_indexes=list(range(size.vision_depth)))
        return transformers.Qwen2_5OmniThinkerConfig(
            audio_config=audio, vision_config=vision, text_config=text, audio_end_token_id=ids["audio_eos_token"],
            **{k.replace("_token_id", "_token_index") if k in ("image_token_id", "video_token_id", "audio_token_id")
               else k: v for k, v in common.items()})
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16, spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=hidden, num_position_embeddings=256,
                  deepstack_visual_indexes=[0])
    audio.update(n_window=50, downsample_hidden_size=32)
    text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=size.intermediate // 4,
                decoder_sparse_step=1)
    return transformers.Qwen3OmniMoeThinkerConfig(audio_config=audio, vision_config=vision, text_config=text,
                                                  **common)


def build_tiny_backbone(name: str, out_dir: str | Path | None = None, seed: int = 0,
                        size: TinySize | None = None) -> Path:
    """Build a tiny random-weight thinker and its processor, save both with ``save_pretrained``; returns the folder.

    Args:
        name: a reserved tiny name (keys of ``TINY_BACKBONES``).
        out_dir: where to save; default ``.cache/backbones/<name>``.
        seed: torch seed for the random weights.
        size: widths and depths (default: the name's own, :data:`TINY_SIZES`); benchmarks build bigger thinkers.
    Raises:
        KeyError: for a name that is not a tiny backbone.
    """
    import torch
    import transformers

    if name not in TINY_BACKBONES:
        raise KeyError(f"{name!r} is not a tiny backbone; choose one of {sorted(TINY_BACKBONES)}")
    family = TINY_BACKBONES[name]
    out = Path(out_dir) if out_dir is not None else backbone_cache() / name
    tokenizer = _build_tokenizer(family)
    size = size or TINY_SIZES.get(name, TinySize())
    processor = _build_processor(family, tokenizer, size)
    config = _tiny_config(family, tokenizer, size)
    torch.manual_seed(seed)
    model = getattr(transformers, family.model_class)(config)
    return save_tiny(model, processor, tokenizer, name, out)


def save_tiny(model, processor, tokenizer, name: str, out: Path) -> Path:
    """Save a freshly built tiny model and its processor into ``out`` atomically; returns ``out``.

    Written to a sibling ``.tmp`` folder and renamed, so a build killed half-way never leaves a folder that
    ``resolve_backbone`` would take for a finished backbone.
    """
    from recipes.io import staged_folder

    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with staged_folder(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "harken_backbone.txt").write_text(f"{name}\n")
    return out


def family_of(config) -> OmniFamily:
    """The Omni family of a loaded config (thinker or full Omni config)."""
    model_type = getattr(config, "model_type", "")
    if model_type.startswith("qwen3_omni"):
        return QWEN3_OMNI
    if model_type.startswith("qwen2_5_omni"):
        return QWEN25_OMNI
    if model_type.startswith("qwen2_5_vl"):
        return QWEN25_VL
    if model_type == "llava_next":
        return LLAVA_NEXT
    if model_type == "internvl":
        return INTERNVL3
    raise ValueError(f"model_type {model_type!r} is not a Qwen-Omni thinker or a vision-language model Harken knows "
                     "how to train (qwen2_5_vl, llava_next, internvl)")


def is_tiny(name: str) -> bool:
    """Whether ``name`` is a reserved tiny name (an Omni thinker or a vision-language model) built offline."""
    return name in TINY_BACKBONES or name in TINY_VLMS


def resolve_backbone(name_or_path: str, cache_dir: str | Path | None = None) -> str:
    """Turn a recipe's ``backbone`` into something ``from_pretrained`` loads offline.

    Tiny names are built on first use; existing local folders are used as they are; a hub id must already be
    in the local Hugging Face cache (nothing downloads in tests or CI).
    Raises:
        FileNotFoundError: a hub id that is not available offline, with how to provide it.
    """
    if name_or_path in TINY_BACKBONES:
        folder = (Path(cache_dir) if cache_dir else backbone_cache()) / name_or_path
        if not (folder / "config.json").is_file():
            build_tiny_backbone(name_or_path, folder)
        return str(folder)
    if name_or_path in TINY_VLMS:
        from train.vlm import build_tiny_vlm

        folder = (Path(cache_dir) if cache_dir else backbone_cache()) / name_or_path
        if not (folder / "config.json").is_file():
            build_tiny_vlm(name_or_path, folder)
        return str(folder)
    if Path(name_or_path).is_dir():
        return name_or_path
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name_or_path, local_files_only=True)
    except Exception as exc:  # huggingface_hub raises several types for "not cached"
        raise FileNotFoundError(
            f"backbone {name_or_path!r} is not a local folder and is not in the Hugging Face cache. Download it on a "
            f"machine with network (`huggingface-cli download {name_or_path}`) and copy the cache, or set the "
            f"recipe's backbone to the checkpoint's folder; tests and the demo use 'tiny-qwen2.5-omni'."
        ) from exc


def load_backbone(name_or_path: str, *, dtype: Any = None, device_map: Any = None,
                  quantization_config: Any = None, cache_dir: str | Path | None = None):
    """Load (thinker model, processor) for a recipe's backbone, tiny or real, through ``from_pretrained``.

    A full Omni checkpoint (thinker + talker) is loaded as its thinker only: Harken trains and scores text.
    Returns:
        (model, processor)
    """
    import transformers
    from transformers import AutoConfig

    path = resolve_backbone(name_or_path, cache_dir)
    config = AutoConfig.from_pretrained(path)
    family = family_of(config)
    model_cls = getattr(transformers, family.model_class)
    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    if config.model_type in ("qwen2_5_omni", "qwen3_omni_moe"):
        # Full release checkpoints hold the thinker under `thinker.`; loading the thinker class from them maps it.
        kwargs["config"] = config.thinker_config
    model = model_cls.from_pretrained(path, **kwargs)
    processor = getattr(transformers, family.processor_class).from_pretrained(path)
    return model, processor


def main(argv: list[str] | None = None) -> int:
    """``python -m train.backbones build NAME [--out DIR]``: build a tiny backbone offline and print its folder."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m train.backbones")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build a tiny random-weight thinker + processor with save_pretrained")
    b.add_argument("name", choices=sorted(TINY_BACKBONES))
    b.add_argument("--out", default=None, help="folder (default .cache/backbones/NAME)")
    b.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build_tiny_backbone(args.name, args.out, seed=args.seed))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
