"""Load anything ``python -m eval run --checkpoint`` accepts: a reserved tiny name, a plain backbone folder (full
weights), or a PEFT LoRA checkpoint of the trainer (``adapter_config.json`` whose ``base_model_name_or_path`` is a
tiny name or a folder). Media settings come from the checkpoint's ``recipe.yaml`` when it has one."""

from __future__ import annotations

import hashlib
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


class CheckpointError(ValueError):
    """A checkpoint folder whose files cannot be what they claim (cut short, not JSON); names the file."""


def check_safetensors(path: Path) -> None:
    """Check a ``.safetensors`` file is complete without loading it: its header parses and every tensor's byte range
    lies inside the file (a copy or download cut short fails here, naming the file, instead of deep in a loader).

    Raises:
        CheckpointError
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        try:
            if n < 2 or 8 + n > size:
                raise ValueError("header length does not fit the file")
            header = json.loads(fh.read(n))
            ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise CheckpointError(f"{path}: not a complete safetensors file ({exc}); copy or save it again") from None
    if 8 + n + max(ends, default=0) > size:
        raise CheckpointError(f"{path}: cut short ({size} bytes, its header needs {8 + n + max(ends)}); copy or save "
                              "it again")


def check_checkpoint_files(folder: Path) -> None:
    """Refuse a checkpoint folder whose weights are truncated or whose ``adapter_config.json`` is not a JSON object
    naming its base, with the file and what is wrong.

    Raises:
        CheckpointError
    """
    for f in sorted(folder.glob("*.safetensors")):
        check_safetensors(f)
    cfg = folder / "adapter_config.json"
    if cfg.is_file():
        try:
            data = json.loads(cfg.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{cfg}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("base_model_name_or_path"), str):
            raise CheckpointError(f"{cfg}: base_model_name_or_path: missing or not a string; it names the model "
                                  "the adapter was trained on")


def checkpoint_recipe(path: str | Path):
    """The resolved recipe saved with a checkpoint (``recipe.yaml``), or None."""
    from recipes.schema import load_recipe

    f = Path(path) / "recipe.yaml"
    return load_recipe(f) if f.is_file() else None


def _adapter_base(folder: Path) -> str:
    """The base an adapter was trained on, as something ``load_backbone`` can load.

    The trainer records an absolute folder (a tiny backbone, or ``runs/NAME/sft/merged`` for a DPO adapter). When a
    run folder was moved or copied, that path is looked up again inside this checkpoint's own run folder
    (``runs/NAME/<stage>/checkpoint-N`` -> ``runs/NAME/<base stage>/merged``). Falling back to the recipe's
    backbone would silently evaluate the wrong model (the un-warmed backbone under a DPO adapter), so an unresolved
    folder is an error.
    Raises:
        FileNotFoundError: the base folder is gone and is not in this run folder either.
    """
    from train.backbones import is_tiny

    check_checkpoint_files(folder)
    base = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
    if is_tiny(base) or Path(base).is_dir():
        return base
    if Path(base).is_absolute():
        moved = folder.resolve().parent.parent / Path(base).parent.name / Path(base).name
        if moved.is_dir():
            return str(moved)
        raise FileNotFoundError(
            f"{folder}: adapter_config.json names base folder {base}, which no longer exists (nor {moved}); "
            f"restore it or edit base_model_name_or_path to where the base model now is")
    return base  # a hub id: load_backbone finds it in the local cache or says how to provide it


def checkpoint_identity(path: str | Path) -> str:
    """The prediction-cache key of what ``load_checkpoint(path)`` would evaluate, computed without loading it.

    An adapter's identity covers its base too: the same adapter on another base is another model. ``eval watch``
    uses this to skip checkpoints already evaluated, so it must agree with :func:`load_checkpoint`.
    """
    from eval.context import checkpoint_fingerprint
    from train.backbones import resolve_backbone

    folder = Path(str(path))
    if folder.is_dir() and (folder / "adapter_config.json").is_file():
        base = _adapter_base(folder)
        base_fp = checkpoint_fingerprint(base) if Path(base).is_dir() else base
        return hashlib.sha256(f"{checkpoint_fingerprint(folder)}:{base_fp}".encode()).hexdigest()[:16]
    return checkpoint_fingerprint(folder if folder.is_dir() else resolve_backbone(str(path)))


def load_checkpoint(path: str | Path, *, recipe=None, dtype: Any = None, device_map: Any = None) -> LoadedCheckpoint:
    """Load a checkpoint for evaluation, in eval mode.

    Args:
        path: tiny backbone name, backbone folder, hub id in the local cache, or trainer checkpoint folder.
        recipe: a :class:`recipes.Recipe` whose media block to use when the checkpoint carries no recipe.yaml.
        dtype, device_map: passed to ``from_pretrained``.
    Raises:
        FileNotFoundError: neither a folder nor a known/cached name (from :func:`train.backbones.resolve_backbone`).
    """
    from train.backbones import is_tiny, load_backbone

    name = str(path)
    folder = Path(name)
    recipe, media = checkpoint_settings(path, recipe)
    if folder.is_dir() and (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        base = _adapter_base(folder)
        model, processor = load_backbone(base, dtype=dtype, device_map=device_map)
        if (folder / "preprocessor_config.json").is_file() or (folder / "processor_config.json").is_file():
            processor = type(processor).from_pretrained(str(folder))
        model = PeftModel.from_pretrained(model, str(folder))
        kind = "adapter"
    else:
        model, processor = load_backbone(name, dtype=dtype, device_map=device_map)
        kind = "tiny" if is_tiny(name) else "folder"
    model.eval()
    return LoadedCheckpoint(name=name, model=model, processor=processor, media=media, recipe=recipe,
                            fingerprint=checkpoint_identity(path), kind=kind)


def checkpoint_settings(path: str | Path, recipe=None) -> tuple[Any, MediaSettings]:
    """(recipe, media settings) :func:`load_checkpoint` evaluates ``path`` with, without loading it: the
    checkpoint's own ``recipe.yaml``, else ``recipe``. A folder's weight files are checked complete first.

    Raises:
        CheckpointError
    """
    folder = Path(str(path))
    if folder.is_dir():
        check_checkpoint_files(folder)
    recipe = (checkpoint_recipe(folder) if folder.is_dir() else None) or recipe
    return recipe, recipe.media if recipe is not None else MediaSettings()


class LazyCheckpoint:
    """What :func:`load_checkpoint` returns, with the model and processor loaded on first use: name, recipe, media
    settings and fingerprint come from files alone, so an evaluation whose predictions are all cached never loads.

    Raises (at construction):
        CheckpointError, FileNotFoundError: as :func:`load_checkpoint` would.
    """

    def __init__(self, path: str | Path, *, recipe=None, dtype: Any = None, device: Any = None):
        self.name, self._recipe_arg, self._dtype, self._device = str(path), recipe, dtype, device
        self.recipe, self.media = checkpoint_settings(path, recipe)
        self.fingerprint = checkpoint_identity(path)
        self._loaded: LoadedCheckpoint | None = None

    def load(self) -> tuple[Any, Any]:
        """(model, processor), loaded once (and moved to ``device`` unless that is the CPU)."""
        if self._loaded is None:
            self._loaded = load_checkpoint(self.name, recipe=self._recipe_arg, dtype=self._dtype)
            if self._device is not None and str(self._device) != "cpu":
                self._loaded.model.to(self._device)
        return self._loaded.model, self._loaded.processor
