"""Optional judge: a chat model the user configures extracts ``{label, offset}`` from a free-form answer that the
deterministic parser left ``undetermined`` (thud.md "Prompts"). Never called unless configured; never in tests.

Two kinds: ``http`` (any OpenAI-compatible ``/v1/chat/completions`` endpoint; the key is read from the environment
variable the user names, never stored) and ``checkpoint`` (a local checkpoint loaded with
:func:`eval.checkpoint.load_checkpoint`, answering text-only).
"""

from __future__ import annotations

import json
import os
import re
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict

from eval.thud.parser import Parsed
from eval.thud.records import LABELS

JUDGE_PROMPT = (
    "A model was shown a video and asked: \"{question}\"\nIts answer was: \"{answer}\"\n"
    "Classify the answer. Reply with JSON only: {{\"label\": L, \"offset\": X}} where L is one of "
    "\"synced\", \"delayed\", \"early\", \"silent\", \"mismatched\", \"undetermined\" (delayed: the sound comes after "
    "the visible event; early: before it; undetermined: the answer does not commit to one), and X is the offset in "
    "seconds the answer states, or null."
)


class JudgeConfig(BaseModel):
    """Where the judge runs. ``kind: http`` needs ``url`` and ``model``; ``kind: checkpoint`` needs ``path``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["http", "checkpoint"]
    url: str | None = None
    model: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    path: str | None = None
    max_new_tokens: int = 64
    timeout_s: float = 60.0

    def model_post_init(self, _ctx) -> None:
        if self.kind == "http" and not (self.url and self.model):
            raise ValueError("judge kind 'http' needs 'url' (e.g. http://localhost:8000/v1) and 'model'")
        if self.kind == "checkpoint" and not self.path:
            raise ValueError("judge kind 'checkpoint' needs 'path' (a checkpoint folder or backbone name)")


def parse_judge_reply(text: str) -> Parsed:
    """The first JSON object of a judge's reply as a :class:`Parsed`; anything else is ``undetermined``."""
    m = re.search(r"\{.*?\}", text or "", re.S)
    if not m:
        return Parsed("undetermined")
    try:
        obj = json.loads(m.group(0))
    except json.JSONDecodeError:
        return Parsed("undetermined")
    label = str(obj.get("label", "")).strip().lower()
    if label not in LABELS:
        return Parsed("undetermined")
    off = obj.get("offset")
    try:
        off = abs(float(off)) if off is not None else None
    except (TypeError, ValueError):
        off = None
    return Parsed(label, off)


def make_judge(config: JudgeConfig, question: str) -> Callable[[str], Parsed]:
    """A function answer -> :class:`Parsed` backed by the configured judge (greedy / temperature 0)."""
    if config.kind == "http":
        import urllib.request

        def ask(answer: str) -> Parsed:
            body = {"model": config.model, "temperature": 0, "max_tokens": config.max_new_tokens,
                    "messages": [{"role": "user", "content": JUDGE_PROMPT.format(question=question, answer=answer)}]}
            headers = {"Content-Type": "application/json"}
            key = os.environ.get(config.api_key_env or "", "")
            if key:
                headers["Authorization"] = f"Bearer {key}"
            req = urllib.request.Request(config.url.rstrip("/") + "/chat/completions", json.dumps(body).encode(),
                                         headers)
            with urllib.request.urlopen(req, timeout=config.timeout_s) as resp:
                reply = json.loads(resp.read().decode())
            return parse_judge_reply(reply["choices"][0]["message"]["content"])

        return ask

    from eval.checkpoint import load_checkpoint

    loaded = load_checkpoint(config.path)

    def ask_local(answer: str) -> Parsed:
        import torch

        proc = loaded.processor
        messages = [{"role": "user", "content": [{"type": "text", "text": JUDGE_PROMPT.format(question=question,
                                                                                               answer=answer)}]}]
        text = proc.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        batch = proc.tokenizer([text], return_tensors="pt").to(next(loaded.model.parameters()).device)
        with torch.no_grad():
            out = loaded.model.generate(**batch, max_new_tokens=config.max_new_tokens, do_sample=False)
        return parse_judge_reply(proc.tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True))

    return ask_local
