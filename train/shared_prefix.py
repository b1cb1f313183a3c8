"""Shared-prefix DPO: a pair's media prompt runs through the thinker once for both answers.

Every pair Harken builds has one clip, one audio condition and one prompt on both sides; only the answer differs.
TRL's layout (2B full sequences, chosen rows then rejected rows) runs the processor, the vision and audio encoders
and the whole prompt twice per pair for the policy and twice again for the reference. Here a pair is one *packed*
sequence ``prompt + chosen + rejected``:

- a block attention mask lets the prompt attend causally to itself, the chosen answer to the prompt and to itself,
  the rejected answer to the prompt and to itself (never to the chosen answer);
- the rejected answer's rotary positions restart where the prompt ends, exactly where the chosen answer's start:
  the multimodal positions of the prompt come from the thinker's own ``compute_3d_position_ids`` (Qwen2.5-Omni's
  TMRoPE and Qwen3-Omni's interleaved mrope alike) and answer tokens, all text, continue them one by one;
- the thinker's own forward merges the media and runs the decoder (Qwen3-Omni's deepstack included), so nothing of
  the model is re-implemented.

A packed sequence rather than a prompt pass with a key/value cache: under gradient checkpointing transformers drops
the cache from checkpointed layers (their backward replay would write it twice), so a cache-based prompt pass would
not carry keys and values to the answers in exactly the runs that need memory; one sequence with a mask works with
and without checkpointing, for the policy and the reference alike, at the cost of an (L x L) mask per pair.

TRL sees an unfolded view (:func:`unfold_index`): the chosen row of pair i is its packed sequence cut after the
chosen answer (the prompt and the chosen answer, as in TRL's own layout), the rejected row is the prompt's last
token followed by the rejected answer. Every token the thinker ran appears once (the prompt's last token twice,
because it predicts the first token of both answers), so TRL's loss types, metrics, token counts and a
mixture-of-experts router loss read the same tokens they would in one sequence; per-token log-probs of the answers
equal those of the unshared layout.

The encoders: when neither the audio nor the vision tower trains (LoRA on the language model, the default), their
outputs are memoised for one training step (:func:`encoders_once`), computed without gradients and shared by the
policy and the reference pass. When a recipe trains a tower (LoRA ``towers`` with it, or full fine-tuning of it),
nothing is memoised and each pass runs the towers with their gradients.
"""

from __future__ import annotations

import contextlib
import types
from typing import Any, Iterator

import torch

# Keys the packed layout adds to a batch: the packed token ids (B, L) and each pair's (prompt, chosen, rejected)
# lengths (B, 3). The patched backbone pops them; without them it is the original forward.
PACKED_IDS = "shared_input_ids"
SEGMENTS = "shared_segments"
# Attention implementations the packed (B, 1, L, L) mask works with; flash-attention kernels take no custom mask.
MASKED_ATTENTION = ("sdpa", "eager")
TOWER_NAMES = ("audio_tower", "visual")


def backbone_of(model):
    """The multimodal backbone (``Qwen*OmniThinkerModel``) of a thinker, under PEFT or not: what TRL's fused head
    calls as ``base_model``."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.base_model


def unsupported(model) -> str | None:
    """Why the packed layout cannot run on ``model`` (None: it can)."""
    backbone = backbone_of(model)
    if not hasattr(backbone, "compute_3d_position_ids"):
        return f"{type(backbone).__name__} has no multimodal rotary positions to continue (not a Qwen-Omni thinker)"
    attn = backbone.config.get_text_config()._attn_implementation or "eager"
    if attn not in MASKED_ATTENTION:
        return f"attention implementation {attn!r} takes no block mask; load the thinker with sdpa or eager"
    return None


def install(model) -> None:
    """Let ``model``'s backbone run packed batches: its ``forward`` gains the :data:`PACKED_IDS` / :data:`SEGMENTS`
    keywords (the original forward runs when they are absent). Idempotent."""
    backbone = backbone_of(model)
    if getattr(backbone.forward, "_harken_packed", False):
        return
    original = backbone.forward

    def forward(self, *args, **kwargs):
        packed, segments = kwargs.pop(PACKED_IDS, None), kwargs.pop(SEGMENTS, None)
        if packed is None:
            return original(*args, **kwargs)
        return packed_forward(self, original, packed, segments, **kwargs)

    forward._harken_packed = True
    backbone.forward = types.MethodType(forward, backbone)


def _segment_ids(segments: torch.Tensor, length: int) -> torch.Tensor:
    """(B, L) segment of each packed position: 0 prompt, 1 chosen, 2 rejected, 3 padding."""
    pos = torch.arange(length, device=segments.device)[None]
    ends = segments.cumsum(1)
    return (pos >= ends[:, 0:1]).long() + (pos >= ends[:, 1:2]).long() + (pos >= ends[:, 2:3]).long()


def block_mask(seg: torch.Tensor, implementation: str, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, L, L) attention mask of packed sequences: causal, and an answer sees the prompt and itself only.

    Boolean (True = attend) for sdpa; additive (0 / dtype minimum) for eager attention, which adds it to the scores.
    Padding positions attend to themselves so that no row of the softmax is empty.
    """
    q, k = seg[:, :, None], seg[:, None, :]
    length = seg.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=seg.device).tril()
    allowed = causal & ((k == 0) | (k == q)) & (k < 3)
    allowed |= torch.eye(length, dtype=torch.bool, device=seg.device)
    allowed = allowed[:, None]
    if implementation == "sdpa":
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=seg.device).masked_fill(~allowed, torch.finfo(dtype).min)


def packed_positions(backbone, packed: torch.Tensor, seg: torch.Tensor, segments: torch.Tensor,
                     kwargs: dict[str, Any]) -> torch.Tensor:
    """(3, B, L) rotary positions: the thinker's own multimodal positions over the prompt; each answer continues
    from the prompt's largest position, one per token (text after text), both answers from the same start."""
    fam = kwargs.get("feature_attention_mask")
    prompt_pos = backbone.compute_3d_position_ids(
        input_ids=packed, image_grid_thw=kwargs.get("image_grid_thw"), video_grid_thw=kwargs.get("video_grid_thw"),
        inputs_embeds=None, attention_mask=(seg == 0).long(), cache=None,
        use_audio_in_video=kwargs.get("use_audio_in_video"),
        audio_feature_lengths=fam.sum(1) if fam is not None else kwargs.get("audio_feature_lengths"),
        video_second_per_grid=kwargs.get("video_second_per_grid"))
    prompt_pos = prompt_pos.to(packed.device)
    top = prompt_pos.masked_fill((seg != 0)[None], -1).amax(dim=(0, 2))  # (B,) largest prompt position
    pos = torch.arange(packed.shape[1], device=packed.device)[None]
    start = torch.where(seg == 2, segments[:, 0:1] + segments[:, 1:2], segments[:, 0:1])  # first index of the answer
    answer = (top[:, None] + 1 + (pos - start)).to(prompt_pos.dtype)
    return torch.where((seg == 0)[None], prompt_pos, answer[None].expand(3, -1, -1))


def unfold_index(segments: torch.Tensor, width: int) -> torch.Tensor:
    """(2B, width) packed index of each position of TRL's rows: chosen rows are the packed sequence up to the end of
    the chosen answer, rejected rows the prompt's last token then the rejected answer. Padding points at 0."""
    prompt, chosen, rejected = segments.unbind(1)
    j = torch.arange(width, device=segments.device)[None]
    chosen_idx = torch.where(j < (prompt + chosen)[:, None], j, 0)
    rej = prompt[:, None] - 1 + j + torch.where(j >= 1, chosen[:, None], 0)
    rejected_idx = torch.where(j < (1 + rejected)[:, None], rej, 0)
    return torch.cat([chosen_idx, rejected_idx])


def _unfold(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` (B, L, ...) gathered into TRL's (2B, width, ...) layout."""
    batch = x.shape[0]
    rows = torch.arange(2 * batch, device=x.device)[:, None] % batch
    return x[rows, index]


def packed_forward(backbone, original, packed: torch.Tensor, segments: torch.Tensor, *, input_ids=None,
                   attention_mask=None, **kwargs):
    """Run the thinker over packed pairs and return hidden states (and router logits) in TRL's row layout.

    ``input_ids``/``attention_mask`` are TRL's unfolded rows; only their width is read (the packed ids carry the
    tokens). Everything else (media tensors, ``use_audio_in_video``, ``use_cache``, ``output_router_logits``) goes
    to the thinker's own forward unchanged.
    """
    from transformers.modeling_outputs import BaseModelOutputWithPast

    seg = _segment_ids(segments, packed.shape[1])
    implementation = backbone.config.get_text_config()._attn_implementation or "eager"
    dtype = backbone.get_input_embeddings().weight.dtype
    position_ids = packed_positions(backbone, packed, seg, segments, kwargs)
    out = original(input_ids=packed, attention_mask=block_mask(seg, implementation, dtype),
                   position_ids=position_ids, **kwargs)
    index = unfold_index(segments, input_ids.shape[1])
    result = BaseModelOutputWithPast(last_hidden_state=_unfold(out.last_hidden_state, index))
    router = getattr(out, "router_logits", None)
    if router:
        # Per layer (B*L, experts) -> TRL's rows, so the load-balancing loss reads the tokens the rows hold.
        result["router_logits"] = tuple(_unfold(r.view(*packed.shape, -1), index).flatten(0, 1) for r in router)
    return result


def towers_frozen(model) -> bool:
    """True when no parameter of the audio or vision tower takes gradients (their outputs can then be shared)."""
    backbone = backbone_of(model)
    towers = [getattr(backbone, name) for name in TOWER_NAMES if hasattr(backbone, name)]
    return not any(p.requires_grad for tower in towers for p in tower.parameters())


@contextlib.contextmanager
def encoders_once(model) -> Iterator[None]:
    """Within the block, each encoder (``get_audio_features`` / ``get_video_features`` / ``get_image_features``)
    runs once per input tensor, without gradients, and later calls with the same tensor reuse its output: the
    policy and the reference pass of one step share them. A no-op when a tower trains (see :func:`towers_frozen`).
    """
    if not towers_frozen(model):
        yield
        return
    backbone = backbone_of(model)
    names = [n for n in ("get_audio_features", "get_video_features", "get_image_features") if hasattr(backbone, n)]
    memo: dict[tuple[str, int], tuple[torch.Tensor, Any]] = {}

    def once(name, method):
        def call(first, *args, **kwargs):
            key = (name, id(first))
            if key not in memo:
                with torch.no_grad():
                    memo[key] = (first, method(first, *args, **kwargs))  # the input is kept: its id stays unique
            return memo[key][1]
        return call

    for name in names:
        setattr(backbone, name, once(name, getattr(backbone, name)))
    try:
        yield
    finally:
        for name in names:
            delattr(backbone, name)  # the class's method shows through again
