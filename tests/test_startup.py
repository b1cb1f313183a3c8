"""Commands that load no model start without the heavy libraries: each runs in a fresh interpreter, exactly as
``python -m MODULE ARGS`` would, and reports what it imported. Timing belongs to ``make bench``, not here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from train.bench import HEAVY, STARTUP, startup_command, subprocess_env, write_predictions

MARK = "HEAVY-IMPORTS "
# Runs a module as __main__ (the way `python -m` does).
RUN_MODULE = """
import runpy
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""
# Runs ``body``, then prints its exit code and the heavy modules it loaded.
PROBE = """
import json, sys
code = 0
try:
{body}
except SystemExit as exc:
    code = exc.code or 0
heavy = [m for m in json.loads({heavy!r}) if m in sys.modules]
print({mark!r} + json.dumps({{"code": code, "heavy": heavy}}))
"""


def _probe(body: str, cwd: Path, argv: list[str] = ()) -> dict:
    code = PROBE.format(body="\n".join("    " + line for line in body.strip().splitlines()), heavy=json.dumps(HEAVY),
                        mark=MARK)
    done = subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, env=subprocess_env(), capture_output=True,
                          text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    assert lines, f"{argv}: no report (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(lines[-1][len(MARK):])


@pytest.mark.parametrize("name", sorted(STARTUP))
def test_command_that_loads_no_model_imports_no_heavy_library(name, tmp_path):
    argv = startup_command(name, write_predictions(tmp_path))[2:]  # without "python -m"
    assert _probe(RUN_MODULE, tmp_path, argv) == {"code": 0, "heavy": []}, name


def test_every_recipe_validates_without_heavy_libraries(tmp_path):
    # Each recipe's eval suites and their options, checked the way loading a recipe always checks them.
    body = """
from recipes.schema import RECIPES_DIR, load_recipe
for path in sorted(RECIPES_DIR.glob("*.yaml")):
    load_recipe(path)
"""
    assert _probe(body, tmp_path) == {"code": 0, "heavy": []}


def test_the_probe_sees_a_heavy_import(tmp_path):
    # The same probe on a command that does import one: an empty list above is a finding, not a blind spot.
    got = _probe(RUN_MODULE, tmp_path, ["timeit", "-n", "1", "-r", "1", "import matplotlib"])
    assert got == {"code": 0, "heavy": ["matplotlib"]}


def test_thud_options_are_checked_without_the_suite_module():
    # Recipe validation checks Thud's options against their model; the model lives apart from the suite (which
    # needs torch), and the suite still exposes it under its old name.
    from eval.options import options_model
    from eval.thud import suite

    model = options_model("thud")
    assert model.__module__ == "eval.thud.options" and suite.ThudOptions is model
    with pytest.raises(ValueError, match="modes"):
        model(modes=["telepathy"])
