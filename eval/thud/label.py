"""``python -m eval label thud ANSWERS.jsonl``: free-form answers -> Thud labels, by the parser and, when one is
configured, the judge. Each input row ``{"text": ...}`` (other fields kept) comes out with ``label``, ``offset``
and ``by`` (``parser`` or ``judge``); a judged row also keeps ``parser_label`` and ``parser_offset``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

from pydantic import BaseModel, ConfigDict

from data_builders.annotations import read_jsonl_models
from eval.stats import wilson_pct
from eval.thud.judge import JudgeConfig, Verdict
from eval.thud.parser import parse_answer


class AnswerRow(BaseModel):
    """One answer to label; every other field of the row is kept."""

    model_config = ConfigDict(extra="allow")

    text: str


def read_answers(path: str | Path) -> list[dict]:
    """Rows of an answers JSONL.

    Raises:
        FileNotFoundError: no such file.
        AnnotationError: (a ValueError) a line that is not a row with a string ``text``, naming file, line and field.
    """
    return [row.model_dump() for _, row in read_jsonl_models(path, AnswerRow, "answers")]


def label_answers(rows: Iterable[dict], judge: Callable[[str], Verdict] | None = None,
                  scope: str = "all") -> list[dict]:
    """Label each row's ``text``. With ``judge`` (scope ``all``: every answer; ``undetermined``: only what the
    parser cannot read) the judge's label is the label and the parser's is kept beside it."""
    out = []
    for row in rows:
        parsed = parse_answer(row["text"])
        new = {**row, "label": parsed.label, "offset": parsed.offset, "by": "parser"}
        if judge is not None and (scope == "all" or parsed.label == "undetermined"):
            verdict = judge(row["text"])
            new.update(label=verdict.parsed.label, offset=verdict.parsed.offset, by="judge",
                       parser_label=parsed.label, parser_offset=parsed.offset)
        out.append(new)
    return out


def summarise(rows: list[dict]) -> dict:
    """Counts per label and source, and the parser-judge agreement (with n and 95% interval) when judged."""
    judged = [r for r in rows if r["by"] == "judge"]
    k = sum(r["parser_label"] == r["label"] for r in judged)
    return {"n": len(rows), "labels": dict(Counter(r["label"] for r in rows)),
            "by": dict(Counter(r["by"] for r in rows)),
            "agreement": {"value": 100.0 * k / len(judged), "n": len(judged), "ci95": wilson_pct(k, len(judged))}
            if judged else None}


def judge_config(recipe=None, url: str | None = None, model: str | None = None,
                 path: str | None = None) -> JudgeConfig | None:
    """The judge to use: a local folder, or a server (no credential), else the recipe's thud judge block (the only
    place a credential variable may be named), else none."""
    if path:
        return JudgeConfig(kind="local", path=path)
    if url or model:
        return JudgeConfig(kind="openai", url=url, model=model)
    if recipe is not None and "thud" in recipe.eval.suites:
        block = recipe.eval.suites["thud"].options.get("judge")
        return JudgeConfig.model_validate(block) if block else None
    return None
