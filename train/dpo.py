"""DPO stage: TRL's ``DPOTrainer`` on video + audio preference pairs.

TRL 1.x's DPOTrainer tokenises text pairs up front and has a collator for images only. What is bypassed is dataset
preparation (rows stay records that :class:`train.collators.DPOCollator` decodes per batch, each side with its own
audio) and the collator; TRL's loss types, metrics and reference handling run unchanged. Its fused LM head calls
the thinker's ``base_model``, which in transformers 5 is the multimodal backbone (audio and vision towers merged
into the embeddings, checked by :func:`train.runtime.load_model`); it receives the video/audio tensors and the
``use_audio_in_video`` flag the collator puts in the batch.

Shared prefix (the stage's ``shared_prefix``, on by default): the collator packs each pair into one sequence, prompt
and media once for both answers, and the thinker's backbone runs it with a block mask (:mod:`train.shared_prefix`);
TRL reads an unfolded view with the same per-sequence log-probs. ``precompute_ref_log_probs`` is TRL's own option:
the reference runs over the dataset once, before training, and the collator passes its columns through.

Reference model: the stage starts from the previous stage's merged weights and trains a fresh LoRA adapter (B = 0
at init); TRL computes reference log-probs with the adapter disabled, i.e. with the SFT-warmed policy. So at the
first step policy and reference agree: reward margin 0 and, for the sigmoid loss, loss ln 2.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

from trl import DPOConfig, DPOTrainer

from train import shared_prefix
from train.callbacks import JsonCsvLogger, RecipeIntoCheckpoints, StopOnNonFinite, with_stage_progress
from train.collators import DPOCollator
from train.launch import check_arguments, current_launch, supervise
from train.runtime import StageContext, report_targets, dataset_dir, load_model, load_rows, lora_config, \
    trainer_kwargs


class OmniDPOTrainer(DPOTrainer):
    """``DPOTrainer`` whose rows are preference records decoded by the collator, not pre-tokenised text, and whose
    thinkers run the collator's packed pairs (:mod:`train.shared_prefix`) when it makes them."""

    def __init__(self, model, *args, data_collator=None, **kwargs):
        # Before TRL's constructor: with precompute_ref_log_probs it already runs the reference over the dataset.
        if getattr(data_collator, "shared_prefix", False):
            problem = shared_prefix.unsupported(model)
            if problem is None:
                shared_prefix.install(model)
            else:
                warnings.warn(f"shared-prefix DPO is off: {problem}", stacklevel=2)
                data_collator.shared_prefix = False
        super().__init__(model, *args, data_collator=data_collator, **kwargs)
        if getattr(data_collator, "shared_prefix", False) and self.ref_model is not None:
            shared_prefix.install(self.ref_model)  # a separate reference (full fine-tuning) runs packed batches too

    def _compute_loss(self, model, inputs, return_outputs):
        # TRL computes the per-sequence log-probs inline here, policy then reference, from the same batch tensors:
        # within one call the frozen encoders run once and both passes reuse their outputs.
        with shared_prefix.encoders_once(self.model):
            return super()._compute_loss(model, inputs, return_outputs)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        # TRL would tokenise prompt/chosen/rejected as plain text here; the Omni collator encodes them with their
        # video and audio per batch instead (as TRL itself does for image datasets).
        return dataset


def dpo_config(ctx: StageContext) -> DPOConfig:
    """The stage's ``DPOConfig``: shared trainer arguments plus beta and the loss types and weights."""
    stage = ctx.stage
    loss_type, loss_weights = stage.dpo_losses()
    extra = {} if stage.label_smoothing is None else {"label_smoothing": stage.label_smoothing}
    args = DPOConfig(**trainer_kwargs(ctx, report_targets(ctx.recipe)), beta=stage.beta or 0.1,
                     loss_type=loss_type, loss_weights=loss_weights, disable_dropout=True,
                     precompute_ref_log_probs=stage.precompute_ref_log_probs, **extra)
    check_arguments(ctx.name, stage, args, current_launch())
    return args


def build_trainer(ctx: StageContext, callbacks: Sequence = (), args: DPOConfig | None = None, pairs=None,
                  model=None, processor=None) -> OmniDPOTrainer:
    """An ``OmniDPOTrainer`` for the stage. ``pairs`` (a dataset of PreferencePair rows) overrides the stage's
    dataset (self-sampled pairs); ``model``/``processor`` reuse an already loaded policy."""
    # The config comes before the model: with a ZeRO-3 config alive, from_pretrained loads the weights already
    # partitioned across ranks instead of one full copy per process.
    args = args if args is not None else dpo_config(ctx)
    rows = pairs if pairs is not None else load_rows(ctx)
    if model is None:
        model, processor = load_model(ctx.recipe, ctx.stage, ctx.base, ctx.base_ref)
    return supervise(with_stage_progress(OmniDPOTrainer(
        model=model,
        args=args,
        train_dataset=rows,
        data_collator=DPOCollator(processor, ctx.recipe.media,
                                  base_dir=None if pairs is not None else dataset_dir(ctx),
                                  shared_prefix=ctx.stage.shared_prefix),
        processing_class=processor,
        peft_config=lora_config(ctx.recipe, model),
        callbacks=[JsonCsvLogger(ctx.out_dir), StopOnNonFinite(ctx.name), RecipeIntoCheckpoints(ctx.recipe),
                   *callbacks],
    ), ctx.name), ctx)


def train_stage(ctx: StageContext, resume_from: Path | None, callbacks: Sequence = ()) -> None:
    """Train the DPO stage to its last step (building self-sampled pairs first when the stage asks for them)."""
    args = dpo_config(ctx)  # first: it sets up the distributed state the self-sampling barriers use
    pairs = model = processor = None
    if ctx.stage.self_sampled is not None and ctx.stage.self_sampled.enabled:
        from train.self_sampled import self_sampled_pairs

        # Generation needs whole weights on each rank; the schema refuses self_sampled with ZeRO-3.
        model, processor = load_model(ctx.recipe, ctx.stage, ctx.base, ctx.base_ref)
        pairs = self_sampled_pairs(ctx, model, processor)
    trainer = build_trainer(ctx, callbacks, args=args, pairs=pairs, model=model, processor=processor)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
