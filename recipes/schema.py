"""The recipe: one YAML file that drives data building, training and evaluation, validated before any work starts.

Loading resolves ``extends:`` (an ablation names its base recipe and changes only what differs), applies
``--set key.path=value`` overrides, then validates: unknown keys, wrong types and impossible combinations fail
with the file, the key and the reason (:class:`RecipeError`). Sections live next to the code that reads them:
``media`` (:mod:`recipes.media`), ``data`` (:mod:`recipes.data`), ``backbone``/``lora``/``quantization``/
``stages``/``eval`` (:mod:`recipes.training`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from recipes.data import DataSection
from recipes.media import PATCH_MULTIPLE, MediaSettings, backbone_patch_factor
from recipes.paths import check_name
from recipes.training import TrainingSections

RECIPES_DIR = Path(__file__).resolve().parent


class RecipeError(ValueError):
    """A recipe that cannot be used: ``file``, ``key`` (dotted path) and the reason."""

    def __init__(self, file: str | Path, key: str, reason: str):
        self.file, self.key, self.reason = str(file), key, reason
        super().__init__(f"{file}: {key}: {reason}")


class Recipe(TrainingSections):
    """A whole recipe. ``name`` defaults to the file's stem; runs go to ``runs/<name>``, data to ``data/<name>``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(description="defaults to the file's name; the run goes to runs/<name>, the data to "
                      "data/<name>")
    description: str = Field("", description="one line for `harken recipes` (default: the recipe's header comment)")
    seed: int = Field(0, description="one seed for data sampling, answer phrasing, shuffles and training",
                      json_schema_extra={"hf": "seed, data_seed"})
    media: MediaSettings = MediaSettings()
    data: DataSection = DataSection()
    _source: str | None = PrivateAttr(None)  # the file it was loaded from (for commands printed in messages)

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_name(cls, name: str) -> str:
        return check_name(name, "recipe name")  # it becomes data/<name> and runs/<name>

    @model_validator(mode="before")
    @classmethod
    def _frames_fit_the_backbone(cls, raw: Any) -> Any:
        # media.patch_factor left out: take the backbone's, so one recipe key (backbone) switches both.
        if isinstance(raw, dict) and isinstance(raw.get("media", {}), dict):
            media = dict(raw.get("media") or {})
            if media.get("patch_factor") is None:
                backbone = raw.get("backbone", cls.model_fields["backbone"].default)
                media["patch_factor"] = backbone_patch_factor(str(backbone)) or PATCH_MULTIPLE
                raw = {**raw, "media": media}
        return raw

    def hash(self) -> str:
        """Content hash of the resolved recipe (what manifests and caches key on)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value  # lists and scalars replace: an ablation states the whole list it wants
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (first on line {seen[key] + 1}); keep one",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str):
    """Parse YAML text with the recipe rules (safe types only, no duplicate keys). Raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def parse_value(value: str, file: str | Path, key: str):
    """A ``--set`` value parsed as YAML (``3``, ``1e-4``, ``[a, b]``, ``null``; empty = empty string).

    Raises:
        RecipeError: the value is not valid YAML, naming the key.
    """
    if not value.strip():
        return ""
    try:
        return parse_yaml(value)
    except yaml.YAMLError as exc:
        raise RecipeError(file, key, f"--set value {value!r} is not valid YAML ({' '.join(str(exc).split())}); "
                          "quote text values, "
                          "e.g. --set key='a: b'") from None


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    if path in chain:
        raise RecipeError(path, "extends", "circular extends: " + " -> ".join(str(p) for p in (*chain, path)))
    if not path.is_file():
        raise RecipeError(path, "<file>", "recipe file does not exist")
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(path, "<yaml>", f"not valid YAML ({' '.join(str(exc).split())})") from None
    except UnicodeDecodeError as exc:
        raise RecipeError(path, "<file>", f"not UTF-8 text (byte {exc.start})") from None
    if not isinstance(raw, dict):
        raise RecipeError(path, "<root>", "a recipe must be a mapping of sections")
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str) or not parent.strip():
        raise RecipeError(path, "extends", f"must be the base recipe's file name (a string), got {parent!r}")
    parent_path = (path.parent / parent).resolve()
    if not parent_path.suffix:
        parent_path = parent_path.with_suffix(".yaml")
    base = _read_yaml(parent_path, (*chain, path))
    base.pop("name", None)  # a child is its own recipe: its name comes from its own file
    base.pop("description", None)
    return _deep_merge(base, raw)


def _apply_override(tree: dict, assignment: str, file: Path) -> None:
    if "=" not in assignment:
        raise RecipeError(file, assignment, "an override must look like key.path=value")
    key, value = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = tree
    for part in parts[:-1]:
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise RecipeError(file, key, f"'{part}' is not an index of that list")
            node = node[int(part)]
            continue
        node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise RecipeError(file, key, f"'{part}' is a value, not a section")
    parsed = parse_value(value, file, key)
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise RecipeError(file, key, f"'{last}' is not an index of that list")
        node[int(last)] = parsed
    else:
        node[last] = parsed


def resolve_path(name_or_path: str | Path) -> Path:
    """``recipes/demo.yaml``, ``demo.yaml`` or ``demo`` -> the recipe file."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    for cand in (RECIPES_DIR / p, RECIPES_DIR / f"{p}.yaml", RECIPES_DIR / p.name):
        if cand.is_file():
            return cand
    raise RecipeError(p, "<file>", f"no recipe file here or in {RECIPES_DIR}")


def load_recipe(name_or_path: str | Path, overrides: Iterable[str] = ()) -> Recipe:
    """Load, resolve ``extends``, apply ``overrides`` (``a.b=c``) and validate a recipe.

    Raises:
        RecipeError: naming the file, the key and the reason.
    """
    path = resolve_path(name_or_path)
    tree = _read_yaml(path.resolve())
    tree.setdefault("name", path.stem)
    for assignment in overrides:
        if "api_key_env" in assignment:
            # Which environment variable a judge's key is read from is fixed in the file a person reviewed; an
            # override could point a judge at any secret of the environment.
            raise RecipeError(path, assignment.split("=", 1)[0].strip(), "a judge's credential variable "
                              "(api_key_env) is named only in the recipe file itself, never by --set")
        _apply_override(tree, assignment, path)
    try:
        recipe = Recipe.model_validate(tree)
        recipe._source = str(path.resolve())
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        if err.get("type") == "finite_number":
            msg = f"{err.get('input')!r} is not a finite number"
        if err.get("type") == "extra_forbidden":
            msg = "unknown key (check its spelling against the schema in recipes/)"
        raise RecipeError(path, key, msg) from exc
    _check_eval_options(recipe, path)
    return recipe


def _check_eval_options(recipe: Recipe, path: Path) -> None:
    """Each eval suite's name against the registry, and its options against the suite's own typed model (unknown
    keys, wrong types)."""
    # Imported here, not at module level: the option models live next to the suites that read them, and loading
    # the recipes package must stay free of evaluation code.
    from eval.options import SuiteOptionsError, check_options
    from eval.suites import SUITES

    for name, suite in recipe.eval.suites.items():
        if name not in SUITES:  # a misspelt suite would otherwise be skipped as "not available" at every checkpoint
            raise RecipeError(path, f"eval.suites.{name}", f"unknown suite (known: {', '.join(sorted(SUITES))})")
        try:
            check_options(name, suite.options)
        except SuiteOptionsError as exc:
            raise RecipeError(path, f"eval.suites.{name}.options.{exc.key}", exc.reason) from exc


def dump_recipe(recipe: Recipe, path: str | Path) -> None:
    """Write the resolved recipe as YAML (checkpoints keep a copy of what produced them)."""
    from recipes.io import write_text

    write_text(path, yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))


def recipe_dict(recipe: Recipe) -> dict[str, Any]:
    return recipe.model_dump(mode="json")
