"""Load anything ``python -m eval run --checkpoint`` accepts: a reserved tiny name, a plain backbone folder (full
weights), or a PEFT LoRA checkpoint of the trainer (``adapter_config.json`` whose ``base_model_name_or_path`` is a
tiny name or a folder). Media settings come from the checkpoint's ``recipe.yaml`` when it has one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recipes.media import MediaSettings


@dataclass
class LoadedCheckpoint:
    """A model ready to evaluate: thinker, processor, the media settings to show it clips with, its recipe (if
    any), and a content fingerprint that keys the prediction cache."""

    name: str
    model: Any
    processor: Any
    media: MediaSettings
    recipe: Any | None
    fingerprint: str
    kind: str  # tiny | folder | adapter


def checkpoint_recipe(path: str | Path):
    """The resolved recipe saved with a checkpoint (``recipe.yaml``), or None."""
    from recipes.schema import load_recipe

    f = Path(path) / "recipe.yaml"
    return load_recipe(f) if f.is_file() else None


def load_checkpoint(path: str | Path, *, recipe=None, dtype: Any = None, device_map: Any = None) -> LoadedCheckpoint:
    """Load a checkpoint for evaluation, in eval mode.

    Args:
        path: tiny backbone name, backbone folder, hub id in the local cache, or trainer checkpoint folder.
        recipe: a :class:`recipes.Recipe` whose media block to use when the checkpoint carries no recipe.yaml.
        dtype, device_map: passed to ``from_pretrained``.
    Raises:
        FileNotFoundError: neither a folder nor a known/cached name (from :func:`train.backbones.resolve_backbone`).
    """
    from eval.context import checkpoint_fingerprint
    from train.backbones import TINY_BACKBONES, load_backbone, resolve_backbone

    name = str(path)
    folder = Path(name)
    saved = checkpoint_recipe(folder) if folder.is_dir() else None
    recipe = saved or recipe
    media = recipe.media if recipe is not None else MediaSettings()
    if folder.is_dir() and (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        base = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
        if not (base in TINY_BACKBONES or Path(base).is_dir()) and recipe is not None:
            base = recipe.backbone  # an adapter trained on a folder that has since moved: the recipe names it
        model, processor = load_backbone(base, dtype=dtype, device_map=device_map)
        if (folder / "preprocessor_config.json").is_file() or (folder / "processor_config.json").is_file():

            processor = type(processor).from_pretrained(str(folder))
        model = PeftModel.from_pretrained(model, str(folder))
        fp = checkpoint_fingerprint(folder)
        kind = "adapter"
    else:
        resolved = resolve_backbone(name)
        model, processor = load_backbone(name, dtype=dtype, device_map=device_map)
        fp = checkpoint_fingerprint(resolved)
        kind = "tiny" if name in TINY_BACKBONES else "folder"
    model.eval()
    return LoadedCheckpoint(name=name, model=model, processor=processor, media=media, recipe=recipe,
                            fingerprint=fp, kind=kind)
