"""The recipe reference, read from the schema itself: every key with its type, default and description.

``harken recipe schema`` prints it; ``harken recipe schema --markdown`` writes ``docs/recipes.md`` (a test checks the
committed page is what this module produces, so the page cannot drift from the code).
"""

from __future__ import annotations

import json
import re
import types
import typing
from dataclasses import dataclass

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


@dataclass(frozen=True)
class SchemaRow:
    """One recipe key: dotted path (``stages.<name>.beta``), type, default, description, and the Hugging Face
    ``TrainingArguments``/TRL field it becomes (empty when none)."""

    key: str
    type: str
    default: str
    description: str
    hf_name: str = ""


def _models_in(annotation) -> list[tuple[str, type[BaseModel]]]:
    """(path suffix, model) for each section model inside a field type: ``X``, ``X | None``, ``list[X]``,
    ``dict[str, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("", annotation)]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return [m for a in args for m in _models_in(a)]
    if origin is list:
        return [("[]" + s, m) for s, m in _models_in(args[0])] if args else []
    if origin is dict and len(args) == 2:
        return [(".<name>" + s, m) for s, m in _models_in(args[1])]
    return []


def type_name(annotation) -> str:
    """A short reader's name for a field type: ``float``, ``list of str``, ``one of sigmoid, hinge``, ..."""
    if annotation is type(None):
        return "null"
    if annotation is typing.Any:  # a class itself since Python 3.11
        return "any"
    if isinstance(annotation, type):
        return "section" if issubclass(annotation, BaseModel) else annotation.__name__
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is list:
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is tuple:
        return "(" + ", ".join(type_name(a) for a in args) + ")"
    if origin is dict:
        return f"mapping {type_name(args[0])} -> {type_name(args[1])}" if args else "mapping"
    return str(annotation).replace("typing.", "")


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return ""
    return json.dumps(value)


def _hf_name(field: FieldInfo) -> str:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return str(extra.get("hf", ""))


def schema_rows(model: type[BaseModel] | None = None, prefix: str = "") -> list[SchemaRow]:
    """Every key of ``model`` (default: the whole recipe), depth first, sections before their keys."""
    if model is None:
        from recipes.schema import Recipe

        model = Recipe
    rows: list[SchemaRow] = []
    for name, field in model.model_fields.items():
        key = prefix + name
        sections = _models_in(field.annotation)
        if sections:
            doc = field.description or (sections[0][1].__doc__ or "").strip().split("\n\n")[0]
            rows.append(SchemaRow(key, type_name(field.annotation), _default(field), plain(doc), _hf_name(field)))
            for suffix, sub in sections:
                rows += schema_rows(sub, f"{key}{suffix}.")
            continue
        rows.append(SchemaRow(key, type_name(field.annotation), _default(field), plain(field.description or ""),
                              _hf_name(field)))
    return rows


def plain(text: str) -> str:
    """Docstring or help text as one plain line: reStructuredText roles and double backquotes become Markdown
    code, line breaks become spaces."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    return " ".join(text.replace("``", "`").split())


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


_INTRO = """# Recipe reference

Generated from the schema by `harken recipe schema --markdown > docs/recipes.md`; a test fails when this page and
the code disagree. `harken recipe show NAME [--set key.path=value]` prints one recipe resolved (after `extends`
and `--set`, with every default filled in).

A recipe is one YAML file read by data building, training and evaluation. An unknown key, a wrong type or an
impossible combination stops the command before any work starts, naming the file, the key and the reason. An
ablation starts with `extends: base.yaml` and states only what differs; `--set key.path=value` overrides any key
from the command line (list items by index: `--set data.shift.bands.0=[1.0,2.0]`).

`stages.<name>.trainer` passes any other field of TRL's `SFTConfig` (SFT stages) or `DPOConfig` (DPO stages) as it
is, e.g. `trainer: {optim: adamw_torch_fused, ddp_timeout: 7200}`; a name those classes do not have is refused at
load, and so is a field that a Harken key below already sets (the last column names it).

"""


def _table(rows: list[SchemaRow]) -> list[str]:
    hf = any(r.hf_name for r in rows)
    out = ["| key | type | default | description |" + (" Hugging Face |" if hf else ""),
           "|---|---|---|---|" + ("---|" if hf else "")]
    for r in rows:
        default = f"`{_cell(r.default)}`" if r.default else ""
        line = f"| `{r.key}` | {_cell(r.type)} | {default} | {_cell(r.description)} |"
        out.append(line + (f" {f'`{r.hf_name}`' if r.hf_name else ''} |" if hf else ""))
    return out + [""]


def markdown_reference() -> str:
    """The reference page: one table per top-level section, with the Hugging Face name of each training key."""
    rows = schema_rows()
    top = [r for r in rows if "." not in r.key and "[" not in r.key]
    plain = [r for r in top if not _is_section(r, rows)]
    out = [_INTRO, "## Top-level keys", ""] + _table(plain)
    for section in (r for r in top if r not in plain):
        keys = [r for r in rows if r.key.startswith((section.key + ".", section.key + "["))]
        out += [f"## `{section.key}`", "", _cell(section.description), ""] + _table(keys)
    return "\n".join(out)


def _is_section(row: SchemaRow, rows: list[SchemaRow]) -> bool:
    return any(r.key.startswith((row.key + ".", row.key + "[")) for r in rows)
