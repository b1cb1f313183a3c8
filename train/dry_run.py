"""``harken train RECIPE --dry-run``: what a recipe would do, without loading weights or touching a GPU.

For each enabled stage: what it starts from, its rows (counted in the built dataset, else planned by the recipe's
``data`` counts), its optimizer steps, and the tokens of one sample from the media block; then an estimate of the GPU
memory per device for the backbone, precision, LoRA/QLoRA, ZeRO stage and batch size. docs/training.md#how-the-memory-estimate-is-made
explains each term and compares the estimate with published figures.

Model sizes come from the backbone's own ``config.json`` (a tiny backbone, a local folder or a cached hub id), built
on PyTorch's ``meta`` device so nothing is allocated; for the two published Omni checkpoints a hub id that is not
cached falls back to their published dimensions (:data:`PUBLISHED`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from recipes.paths import data_dir
from recipes.schema import Recipe
from recipes.training import Stage, deepspeed_config

GB = 1024 ** 3
# Fixed per-process cost: CUDA context, cuBLAS/NCCL workspaces and allocator fragmentation (typically 0.5-1.5 GiB).
OVERHEAD_BYTES = 1.0 * GB
# Activation bytes per token, per layer, per hidden unit of a bf16 transformer layer kept for the backward pass
# (Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models", 2022: 34 s·b·h per layer
# without the attention-score term, which flash/SDPA attention does not store). With recomputation only each
# layer's input (2 bytes) is kept, plus one layer's full set during its backward.
ACT_BYTES_PER_TOKEN_HIDDEN = 34
CKPT_BYTES_PER_TOKEN_HIDDEN = 2
# 4-bit NF4 weights with double-quantised block constants: 4.127 bits per parameter (QLoRA paper, Dettmers et al.
# 2023, section 3).
NF4_BYTES = 4.127 / 8
TEXT_TOKENS = 128  # chat template, prompt and answer of a Thud-style sample (a generous bound)


@dataclass(frozen=True)
class ModelDims:
    """What the estimate needs to know about a backbone's thinker."""

    family: str            # qwen2.5-omni | qwen3-omni | qwen2.5-vl
    params: int            # all parameters of the thinker
    tower_params: dict     # language_model / audio_tower / visual -> parameters
    linear_params: int     # parameters in nn.Linear layers outside lm_head (what 4-bit quantisation converts)
    hidden: int
    layers: int
    vocab: int
    lora_shapes: dict      # tower -> [(in, out)] of every linear layer LoRA's target names match there
    vision_factor: int     # patch size x merge size
    temporal_patch: int
    source: str            # where the dimensions came from


# Published dimensions of the released thinkers, used when the checkpoint is not on this machine. LM sizes are those
# of the text models they are built on (Qwen2.5-7B; Qwen3-30B-A3B), the towers' sizes those of the technical
# reports (Qwen2.5-Omni: 675M vision encoder, ~640M audio encoder; Qwen3-Omni: ~540M vision, ~650M audio).
PUBLISHED = {
    "qwen/qwen2.5-omni-7b": dict(family="qwen2.5-omni", lm=7_615_616_512, audio=640_000_000, visual=675_000_000,
                                 hidden=3584, layers=28, vocab=152064, intermediate=18944, kv=512, experts=0,
                                 vision_factor=28),
    "qwen/qwen3-omni-30b-a3b-instruct": dict(family="qwen3-omni", lm=30_532_122_624, audio=650_000_000,
                                             visual=540_000_000, hidden=2048, layers=48, vocab=151936,
                                             intermediate=768, kv=512, experts=128, vision_factor=32),
}
PUBLISHED["qwen/qwen2.5-vl-7b-instruct"] = dict(PUBLISHED["qwen/qwen2.5-omni-7b"], family="qwen2.5-vl", audio=0)
PUBLISHED["qwen/qwen3-omni-30b-a3b-thinking"] = PUBLISHED["qwen/qwen3-omni-30b-a3b-instruct"]
PUBLISHED["qwen/qwen3-omni-30b-a3b-captioner"] = PUBLISHED["qwen/qwen3-omni-30b-a3b-instruct"]


def _published_dims(backbone: str, recipe: Recipe) -> ModelDims | None:
    spec = PUBLISHED.get(backbone.lower())
    if spec is None:
        return None
    h, i, kv, layers = spec["hidden"], spec["intermediate"], spec["kv"], spec["layers"]
    heads_dim = h if spec["family"] == "qwen2.5-omni" else 4096  # Qwen3-30B-A3B: 32 heads x 128
    shapes = {"q_proj": (h, heads_dim), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (heads_dim, h)}
    if not spec["experts"]:  # dense MLP; the MoE experts are fused parameters, not linear layers
        shapes |= {"gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
    lm = [shapes[n] for n in recipe.lora.target_modules if n in shapes] * layers
    total = spec["lm"] + spec["audio"] + spec["visual"]
    embed = 2 * spec["vocab"] * h
    return ModelDims(family=spec["family"], params=total,
                     tower_params={"language_model": spec["lm"], "audio_tower": spec["audio"],
                                   "visual": spec["visual"]},
                     linear_params=total - embed, hidden=h, layers=layers, vocab=spec["vocab"],
                     lora_shapes={"language_model": lm}, vision_factor=spec["vision_factor"], temporal_patch=2,
                     source="published dimensions (checkpoint not on this machine)")


def model_dims(recipe: Recipe) -> ModelDims:
    """Dimensions of the recipe's backbone: from its config on the meta device, else :data:`PUBLISHED`.

    Raises:
        FileNotFoundError: neither a config on this machine nor published dimensions for that name.
    """
    from train.backbones import resolve_backbone

    try:
        folder = resolve_backbone(recipe.backbone)
    except FileNotFoundError:
        dims = _published_dims(recipe.backbone, recipe)
        if dims is None:
            raise
        return dims
    return _config_dims(folder, recipe)


def _config_dims(folder: str, recipe: Recipe) -> ModelDims:
    import torch
    import transformers
    from transformers import AutoConfig

    from train.backbones import family_of

    config = AutoConfig.from_pretrained(folder)
    family = family_of(config)
    if config.model_type in ("qwen2_5_omni", "qwen3_omni_moe"):
        config = config.thinker_config
    with torch.device("meta"):
        model = getattr(transformers, family.model_class)._from_config(config)
    towers = {t: sum(p.numel() for p in getattr(model.model, t).parameters())
              for t in ("language_model", "audio_tower", "visual") if hasattr(model.model, t)}
    pattern = re.compile(r"(.*\.)?model\.(\w+)\..*\.(" + "|".join(map(re.escape, recipe.lora.target_modules)) + ")$")
    shapes: dict[str, list] = {}
    linear = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head"):
            linear += module.weight.numel()
            m = pattern.fullmatch(name)
            if m:
                shapes.setdefault(m.group(2), []).append((module.in_features, module.out_features))
    text = config.get_text_config()
    vision = getattr(config, "vision_config", None)
    factor = (vision.patch_size * getattr(vision, "spatial_merge_size", 2)) if vision is not None else 28
    return ModelDims(family=family.name, params=sum(p.numel() for p in model.parameters()), tower_params=towers,
                     linear_params=linear, hidden=text.hidden_size, layers=text.num_hidden_layers,
                     vocab=text.vocab_size, lora_shapes=shapes, vision_factor=factor,
                     temporal_patch=getattr(vision, "temporal_patch_size", 2) if vision is not None else 2,
                     source=f"config of {folder}")


def sample_tokens(recipe: Recipe, dims: ModelDims) -> dict[str, int]:
    """Tokens of one sample at the media block's limits (the longest clip it decodes, full pixel budget): video,
    audio, text and their sum. Audio tokens come from the family's own processor arithmetic."""
    media = recipe.media
    seconds = min(media.max_clip_seconds, media.max_frames / media.fps)
    frames = min(media.max_frames, max(2, math.ceil(media.fps * seconds)))
    per_frame = media.max_pixels // (dims.vision_factor ** 2)
    video = math.ceil(frames / dims.temporal_patch) * per_frame
    audio = 0
    if dims.family == "qwen2.5-vl":  # a vision-language model: one still image per sample (the spectrogram rows)
        frames, video, seconds = 1, per_frame, 0
    else:
        import numpy as np

        module = "qwen3_omni_moe" if dims.family == "qwen3-omni" else "qwen2_5_omni"
        lengths = __import__(f"transformers.models.{module}.processing_{module}",
                             fromlist=["_get_feat_extract_output_lengths"])._get_feat_extract_output_lengths
        mel_frames = int(seconds * 100)  # Whisper features: 10 ms hop at 16 kHz
        audio = int(lengths(np.array([mel_frames]))[0])
    return {"seconds": seconds, "frames": frames, "video": video, "audio": audio, "text": TEXT_TOKENS,
            "total": video + audio + TEXT_TOKENS}


@dataclass
class MemoryEstimate:
    """GPU memory per device, in bytes, by component."""

    parts: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(self.parts.values())


def _zero(stage: Stage) -> tuple[int, bool, bool]:
    """(ZeRO stage, optimizer offloaded to CPU, parameters offloaded to CPU) of a stage's DeepSpeed config."""
    if stage.deepspeed is None:
        return 0, False, False
    z = deepspeed_config(stage.deepspeed).get("zero_optimization", {})
    return (int(z.get("stage", 0)), z.get("offload_optimizer", {}).get("device") == "cpu",
            z.get("offload_param", {}).get("device") == "cpu")


def trainable_params(recipe: Recipe, dims: ModelDims) -> int:
    """LoRA: r x (in + out) over every adapted linear layer of the chosen towers; else every weight of the towers."""
    if recipe.lora.enabled:
        return sum(recipe.lora.r * (i + o) for t in recipe.lora.towers for i, o in dims.lora_shapes.get(t, []))
    return sum(dims.tower_params.get(t, 0) for t in recipe.lora.towers)


def estimate_memory(recipe: Recipe, stage: Stage, dims: ModelDims, tokens: int, gpus: int = 1,
                    bf16: bool = True) -> MemoryEstimate:
    """Estimate the peak GPU memory of one training process of ``stage`` (see the module docstring)."""
    est = MemoryEstimate()
    zero, offload_opt, offload_param = _zero(stage)
    width = 2 if bf16 else 4
    if recipe.quantization.enabled:
        weights = dims.linear_params * NF4_BYTES + (dims.params - dims.linear_params) * width
    else:
        weights = dims.params * width
    shard = gpus if zero == 3 else 1
    est.parts["weights"] = 0.0 if offload_param else weights / shard
    if stage.kind == "dpo" and not recipe.lora.enabled:  # TRL keeps a frozen copy as the reference model
        est.parts["reference model"] = est.parts["weights"]
    t = trainable_params(recipe, dims)
    adapters = t * 4 if recipe.lora.enabled else 0  # PEFT keeps adapter weights in fp32 under mixed precision
    grads = t * (4 if recipe.lora.enabled or not bf16 else width)
    optim = t * 8 + (t * 4 if zero and bf16 and not recipe.lora.enabled else 0)  # Adam m, v (+ fp32 master)
    opt_shard = gpus if zero >= 1 else 1
    grad_shard = gpus if zero >= 2 else 1
    est.parts["LoRA adapters"] = adapters
    est.parts["gradients"] = grads / grad_shard
    est.parts["optimizer states"] = 0.0 if offload_opt else optim / opt_shard
    seqs = stage.batch_size * (2 if stage.kind == "dpo" else 1)
    per_token = (CKPT_BYTES_PER_TOKEN_HIDDEN if stage.gradient_checkpointing else ACT_BYTES_PER_TOKEN_HIDDEN)
    acts = seqs * tokens * dims.hidden * dims.layers * per_token
    if stage.gradient_checkpointing:
        acts += seqs * tokens * dims.hidden * ACT_BYTES_PER_TOKEN_HIDDEN  # one layer recomputed at a time
    est.parts["activations"] = acts
    est.parts["logits"] = seqs * tokens * dims.vocab * (width + 4)  # bf16 logits and their fp32 log-softmax
    est.parts["CUDA overhead"] = OVERHEAD_BYTES
    trained_towers = [tw for tw in recipe.lora.towers if tw != "language_model"]
    if trained_towers:
        est.notes.append(f"activations of {', '.join(trained_towers)} (trained here) are not included")
    if dims.family == "qwen3-omni" and recipe.lora.enabled:
        est.notes.append("LoRA count covers attention only: the fused MoE experts are adapted as parameters")
    return est


def _rows(recipe: Recipe, stage: Stage, folder: Path) -> tuple[int | None, str]:
    """Rows the stage trains on (only its ``data.sources`` when it names some) and where the count comes from."""
    wanted = set(stage.data.sources or [])
    if (folder / "dataset_info.json").is_file() or (folder / "state.json").is_file():
        from datasets import load_from_disk

        ds = load_from_disk(str(folder))
        n = sum(1 for s in ds["source"] if s in wanted) if wanted else len(ds)
        source = f"built at {folder}"
    elif stage.data.path is None:
        planned = getattr(recipe.data, stage.data.dataset)
        n = sum(v for k, v in planned.items() if not wanted or k in wanted) or None
        source = f"planned by data.{stage.data.dataset} (not built yet)"
    else:
        return None, f"{folder} does not exist yet"
    if n is not None and stage.data.limit is not None:
        n = min(n, stage.data.limit)
    return n, source + (f", sources {', '.join(sorted(wanted))}" if wanted else "")


def steps_of(stage: Stage, rows: int | None, gpus: int) -> int | None:
    """Optimizer steps of a stage: ``max_steps``, else epochs over the rows at the global batch size."""
    if stage.max_steps is not None:
        return stage.max_steps
    if rows is None:
        return None
    per_epoch = math.ceil(rows / (stage.batch_size * gpus * stage.grad_accum))
    return math.ceil(per_epoch * (stage.epochs or 1.0))


def _count(n: float) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def dry_run(recipe: Recipe, data_root: str | Path | None = None, gpus: int = 1, bf16: bool | None = None) -> str:
    """The dry-run report of ``recipe`` as text. ``gpus``: processes the run would use (ZeRO shards over them);
    ``bf16``: the precision to assume (default: the recipe's, with ``auto`` meaning bf16 as on a GPU)."""
    data_root = Path(data_root) if data_root is not None else data_dir(recipe.name)
    bf16 = recipe.precision != "fp32" if bf16 is None else bf16
    dims = model_dims(recipe)
    tok = sample_tokens(recipe, dims)
    t = trainable_params(recipe, dims)
    lines = [f"recipe {recipe.name} (hash {recipe.hash()}), backbone {recipe.backbone}: {_count(dims.params)} "
             f"parameters ({dims.source})",
             f"precision {'bf16' if bf16 else 'fp32'}"
             + (" (auto: as on a GPU with bf16)" if recipe.precision == "auto" and bf16 else "") + ", "
             + (f"LoRA r={recipe.lora.r} on {', '.join(recipe.lora.towers)}: {_count(t)} trainable"
                if recipe.lora.enabled else f"full fine-tuning of {', '.join(recipe.lora.towers)}: {_count(t)} "
                                            "trainable")
             + (", 4-bit base weights (QLoRA)" if recipe.quantization.enabled else "") + f", {gpus} GPU(s)",
             (f"one sample at most: {tok['seconds']:g} s, {tok['frames']} frames -> {tok['video']} video + "
              f"{tok['audio']} audio + " if tok["seconds"] else f"one sample at most: 1 image -> {tok['video']} "
              "image + ") + f"~{tok['text']} text = {tok['total']} tokens "
             f"(media: fps {recipe.media.fps:g}, max_pixels {recipe.media.max_pixels}, frame sides x"
             f"{dims.vision_factor})", ""]
    for name, stage in recipe.active_stages():
        base = recipe.base_stage(name)  # start_from, else the previous stage
        prev = recipe.backbone if base is None else f"{base}'s final weights"
        folder = Path(stage.data.path) if stage.data.path else data_root / stage.data.dataset
        rows, source = _rows(recipe, stage, folder)
        steps = steps_of(stage, rows, gpus)
        zero = _zero(stage)
        est = estimate_memory(recipe, stage, dims, tok["total"], gpus, bf16)
        unit = "pairs" if stage.kind == "dpo" else "samples"
        lines += [f"stage {name} ({stage.kind}) from {prev}",
                  f"  data: {rows if rows is not None else '?'} {unit}, {source}"
                  + (" (self-sampled pairs are built from these at the stage's start)"
                     if stage.self_sampled is not None and stage.self_sampled.enabled else ""),
                  f"  steps: {steps if steps is not None else '?'} (batch {stage.batch_size} x grad_accum "
                  f"{stage.grad_accum} x {gpus} GPU(s)"
                  + (f", max_steps {stage.max_steps}" if stage.max_steps else f", {stage.epochs:g} epoch(s)") + ")",
                  f"  ZeRO stage {zero[0]}" + (" (optimizer on CPU)" if zero[1] else "")
                  + (" (parameters on CPU)" if zero[2] else "")
                  + (", gradient checkpointing" if stage.gradient_checkpointing else ""),
                  f"  estimated GPU memory per device: {est.total / GB:.1f} GiB ("
                  + ", ".join(f"{k} {v / GB:.2f}" for k, v in est.parts.items() if v) + ")"]
        lines += [f"  note: {n}" for n in est.notes]
    return "\n".join(lines)
