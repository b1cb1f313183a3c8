"""SFT stage: TRL's ``SFTTrainer`` on video + audio conversations (or still-image ones), answer tokens only.

TRL prepares text datasets itself; here rows are records (clip path, audio intervention, prompt, answer) that
:class:`train.collators.SFTCollator` decodes and encodes per batch, so dataset preparation is skipped and unused
columns are kept. The loss is TRL's (its fused LM head runs the thinker's own multimodal backbone), with
``use_audio_in_video`` coming from the collator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from trl import SFTConfig, SFTTrainer

from train.callbacks import JsonCsvLogger, RecipeIntoCheckpoints, StopOnNonFinite, with_stage_progress
from train.collators import ImageSFTCollator, SFTCollator
from train.launch import check_arguments, current_launch, supervise
from train.runtime import StageContext, report_targets, dataset_dir, load_model, load_rows, lora_config, \
    trainer_kwargs


def build_trainer(ctx: StageContext, callbacks: Sequence = ()) -> SFTTrainer:
    """An ``SFTTrainer`` for the stage: model from ``ctx.base`` (LoRA/QLoRA as the recipe says), rows from the
    stage's dataset, the Omni collator, JSONL/CSV logs and recipe copies in checkpoints."""
    # The config comes before the model: with a ZeRO-3 config alive, from_pretrained loads the weights already
    # partitioned across ranks instead of one full copy per process.
    args = SFTConfig(**trainer_kwargs(ctx, report_targets(ctx.recipe)),
                     dataset_kwargs={"skip_prepare_dataset": True}, packing=False)
    check_arguments(ctx.name, ctx.stage, args, current_launch())
    rows = load_rows(ctx)
    model, processor = load_model(ctx.recipe, ctx.stage, ctx.base, ctx.base_ref)
    # A set holds clip rows or image rows (the recipe refuses a mix), so its columns say which collator it needs.
    collator = ImageSFTCollator if "images" in rows.column_names else SFTCollator
    return supervise(with_stage_progress(SFTTrainer(
        model=model,
        args=args,
        train_dataset=rows,
        data_collator=collator(processor, ctx.recipe.media, base_dir=dataset_dir(ctx)),
        processing_class=processor,
        peft_config=lora_config(ctx.recipe, model),
        callbacks=[JsonCsvLogger(ctx.out_dir), StopOnNonFinite(ctx.name), RecipeIntoCheckpoints(ctx.recipe),
                   *callbacks],
    ), ctx.name), ctx)


def train_stage(ctx: StageContext, resume_from: Path | None, callbacks: Sequence = ()) -> None:
    """Train the SFT stage to its last step, resuming from ``resume_from`` (a checkpoint folder) when given."""
    trainer = build_trainer(ctx, callbacks)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
