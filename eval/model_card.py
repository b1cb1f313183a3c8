"""``harken push runs/NAME --repo-id USER/NAME``: a model card with the run's evaluation tables, and the upload.

The card (``README.md`` in the folder that is uploaded) states the backbone, the recipe and its stages, and the
evaluation tables of the base backbone and of the published checkpoint (Thud in the Table-1 layout, the spectrogram
benchmark per condition), read from their ``results.json``. ``--no-push`` writes the card only. The upload goes
through ``huggingface_hub`` and needs a token (``huggingface-cli login`` or ``HF_TOKEN``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from eval.report import TABLE1_HEADER, _md_table, _pct, table1_cells

log = logging.getLogger(__name__)


def _results(folder: Path) -> dict | None:
    f = folder / "results.json"
    return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else None


def evaluation_tables(evaluated: list[tuple[str, dict]]) -> list[str]:
    """Markdown tables of (label, results.json) rows: Thud per answer mode, spectrogram accuracy per condition."""
    lines: list[str] = []
    modes = list(dict.fromkeys(m for _, r in evaluated for m in r["suites"].get("thud", {}).get("metrics", {})))
    for mode in modes:
        rows = [[label, *table1_cells(r["suites"]["thud"]["metrics"][mode])] for label, r in evaluated
                if mode in r["suites"].get("thud", {}).get("metrics", {})]
        lines += [f"### Thud, {mode} (accuracy %)", ""] + _md_table(["model", *TABLE1_HEADER], rows) + [""]
    spec = [(label, r["suites"]["spectrogram_mcq"]) for label, r in evaluated
            if r["suites"].get("spectrogram_mcq", {}).get("status", "ok") == "ok" and "spectrogram_mcq" in r["suites"]]
    if spec:
        conds = list(dict.fromkeys(c for _, s in spec for c in s.get("conditions", {})))
        rows = [[label, *[_pct(s.get("conditions", {}).get(c)) for c in conds]] for label, s in spec]
        lines += ["### Spectrogram multiple choice (accuracy %, chance 25%)", ""]
        lines += _md_table(["model", *conds], rows) + [""]
    return lines


def model_card(run_dir: str | Path) -> tuple[Path, str]:
    """(folder to upload, card text) for a finished run: the last stage's final weights, with the evaluation of the
    base backbone and of that stage's last checkpoint.

    Raises:
        FileNotFoundError: the run has no finished stage, or its last checkpoint has not been evaluated.
    """
    from eval.runner import run_recipe_of
    from train.checkpoints import read_result

    run_dir = Path(run_dir)
    recipe = run_recipe_of(run_dir)
    if recipe is None or not recipe.active_stages():
        raise FileNotFoundError(f"{run_dir}: no recipe found in its checkpoints; train it first (harken train NAME)")
    results = [(name, read_result(run_dir / name)) for name, _ in recipe.active_stages()]
    if any(r is None for _, r in results):
        missing = [n for n, r in results if r is None]
        raise FileNotFoundError(f"{run_dir}: stage(s) {missing} not finished; run harken train {recipe.name} first")
    last_name, last = results[-1]
    evaluated = [(f"{last_name}/checkpoint-{last.final_step}", _results(Path(last.checkpoint) / "eval"))]
    if evaluated[0][1] is None:
        raise FileNotFoundError(f"{last.checkpoint} has not been evaluated; run harken eval watch {run_dir} --once")
    base = _results(run_dir / "eval" / "base")
    if base is not None:
        evaluated.insert(0, (f"{recipe.backbone} (base)", base))
    stages = [f"- `{name}`: {r.kind.upper()}, {r.final_step} steps" for name, r in results]
    lora = recipe.lora
    card = ["---", f"base_model: {recipe.backbone}", "library_name: transformers",
            "tags: [harken, audio-visual, " + ", ".join(dict.fromkeys(r.kind for _, r in results)) + "]", "---", "",
            f"# {recipe.name}", "",
            recipe.description or f"`{recipe.backbone}` trained with Harken's `{recipe.name}` recipe to listen: "
            "its answers about a clip's sound should follow the audio, not the picture.", "",
            "## Training", "", f"Backbone `{recipe.backbone}`, precision {recipe.precision}, "
            + (f"LoRA r={lora.r} on {', '.join(lora.towers)} (merged into these weights)" if lora.enabled
               else f"full fine-tuning of {', '.join(lora.towers)}") + f", recipe hash `{recipe.hash()}`.", "",
            *stages, "", "## Evaluation", "",
            "Thud: held-out clips under their original audio and under Shift, Mute and Swap interventions; "
            "pair = original and intervened both answered right. Avg Gap: mean of original minus intervened "
            "accuracy over the three dimensions.", "", *evaluation_tables(evaluated)]
    return Path(last.weights), "\n".join(card)


def main(argv: list[str] | None = None) -> int:
    """Write the model card into the run's final weights folder and upload that folder unless ``--no-push``."""
    parser = argparse.ArgumentParser(prog="harken push", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="runs/NAME of a finished, evaluated run")
    parser.add_argument("--repo-id", default=None, help="hub repository, e.g. USER/NAME (required unless --no-push)")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--no-push", action="store_true", help="write README.md (the card) only")
    args = parser.parse_args(argv)
    from recipes.quiet import quiet_startup

    quiet_startup()
    try:
        if not args.no_push and not args.repo_id:
            raise ValueError("--repo-id USER/NAME is required to push (or pass --no-push to write the card only)")
        folder, card = model_card(args.run_dir)
        tmp = folder / "README.md.tmp"
        tmp.write_text(card, encoding="utf-8")
        tmp.replace(folder / "README.md")
        log.info("wrote %s", folder / "README.md")
        if args.no_push:
            return 0
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(args.repo_id, private=args.private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=args.repo_id, commit_message="Harken run upload")
        log.info("pushed %s to https://huggingface.co/%s", folder, args.repo_id)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
