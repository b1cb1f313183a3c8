"""The judge: a chat model the user configures reads each free-form answer and returns ``{label, offset}``, the
protocol "When Vision Speaks for Sound" labels free-form answers with. Never called unless configured.

Two kinds, both greedy (temperature 0):
- ``openai``: any OpenAI-compatible server (vLLM, llama.cpp, a hosted API) through the ``openai`` client;
- ``local``: a transformers causal LM on disk (e.g. an instruct checkpoint), run in this process.

A credential is read only from the environment variable that ``api_key_env`` names (the recipe's judge block names
it; the runner refuses it from ``--set``), and is only ever sent over https or to a loopback address: anything
else stops with an error before a request is made. Without ``api_key_env`` no credential is sent, whatever the
environment holds.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass
from typing import Callable, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field

from eval.thud.parser import Parsed
from eval.thud.records import LABELS

JUDGE_PROMPT = (
    "A model was shown a video and asked: \"{question}\"\nIts answer was: \"{answer}\"\n"
    "Classify the answer. Reply with JSON only: {{\"label\": L, \"offset\": X}} where L is one of "
    "\"synced\", \"delayed\", \"early\", \"silent\", \"mismatched\", \"undetermined\" (delayed: the sound comes after "
    "the visible event; early: before it; silent: no sound; mismatched: the sound does not belong to what is seen; "
    "synced: the sound is there, belongs to the event and is heard when it happens; undetermined: the answer does "
    "not commit to one), and X is the offset in seconds the answer states, or null."
)


class JudgeConfig(BaseModel):
    """Where the judge runs. ``kind: openai`` needs ``url`` and ``model``; ``kind: local`` needs ``path``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["openai", "local"]
    url: str | None = Field(None, description="openai: base URL of the server, e.g. http://127.0.0.1:8000/v1")
    model: str | None = Field(None, description="openai: the model name the server knows")
    api_key_env: str | None = Field(None, description="openai: environment variable holding the key (recipe only)")
    path: str | None = Field(None, description="local: folder of a transformers causal LM and its tokenizer")
    scope: Literal["all", "undetermined"] = Field(
        "all", description="all: every free-form answer is judged (the paper's protocol); undetermined: only what "
                           "the parser cannot read")
    max_new_tokens: int = Field(64, ge=1)
    timeout_s: float = Field(60.0, gt=0)

    def model_post_init(self, _ctx) -> None:
        if self.kind == "openai" and not (self.url and self.model):
            raise ValueError("judge kind 'openai' needs 'url' (e.g. http://127.0.0.1:8000/v1) and 'model'")
        if self.kind == "local" and not self.path:
            raise ValueError("judge kind 'local' needs 'path' (a folder with a causal LM and its tokenizer)")

    def describe(self) -> str:
        """What the report says judged the answers."""
        return f"{self.model} at {self.url}" if self.kind == "openai" else f"local {self.path}"


@dataclass(frozen=True)
class Verdict:
    """A judge's reading of one answer and its raw reply (kept in the predictions for audit)."""

    parsed: Parsed
    reply: str


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


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def judge_credential(config: JudgeConfig) -> str | None:
    """The key to send, or None when ``api_key_env`` is unset.

    Raises:
        ValueError: the named variable is empty or missing, or the URL is neither https nor a loopback address
            (the key would travel in clear text to another machine).
    """
    if config.kind != "openai" or not config.api_key_env:
        return None
    url = urlparse(config.url or "")
    if url.scheme != "https" and not _is_loopback(url.hostname):
        raise ValueError(f"judge: refusing to send the key from ${config.api_key_env} to {config.url}: a credential "
                         "is only sent over https or to a loopback address (127.0.0.1, ::1, localhost); use an "
                         "https URL, or drop api_key_env for a server that needs no key")
    key = os.environ.get(config.api_key_env, "")
    if not key:
        raise ValueError(f"judge: api_key_env names ${config.api_key_env}, which is not set; export it or remove "
                         "api_key_env from the judge block")
    return key


def judge_messages(question: str, answer: str) -> list[dict]:
    """The judge's one user turn (plain-string content, which every chat template and server accepts)."""
    return [{"role": "user", "content": JUDGE_PROMPT.format(question=question, answer=answer)}]


def load_local_judge(path: str, max_new_tokens: int = 64) -> Callable[[list[dict]], str]:
    """A function chat messages -> greedy reply text, backed by a transformers causal LM in ``path``.

    Raises:
        FileNotFoundError: ``path`` is not a folder.
    """
    from pathlib import Path

    if not Path(path).is_dir():
        raise FileNotFoundError(f"judge: {path} is not a folder with a causal LM (config.json, weights, tokenizer)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()

    def reply(messages: list[dict]) -> str:
        if tok.chat_template:
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:  # a base LM without a chat template: the prompt as plain text
            text = "\n".join(m["content"] for m in messages) + "\n"
        batch = tok([text], return_tensors="pt").to(next(model.parameters()).device)
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
        return tok.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)

    return reply


def make_judge(config: JudgeConfig, question: str) -> Callable[[str], Verdict]:
    """A function answer -> :class:`Verdict` backed by the configured judge.

    Raises:
        ValueError: a credential that may not be sent (:func:`judge_credential`); raised here, before any request.
    """
    if config.kind == "openai":
        from openai import OpenAI

        # An explicit key (or a placeholder) always: left None, the client would read OPENAI_API_KEY by itself and
        # send it wherever the URL points.
        client = OpenAI(base_url=config.url, api_key=judge_credential(config) or "no-key", timeout=config.timeout_s,
                        max_retries=1)

        def remote(messages: list[dict]) -> str:
            resp = client.chat.completions.create(model=config.model, messages=messages, temperature=0,
                                                  max_tokens=config.max_new_tokens)
            return resp.choices[0].message.content or ""

        reply = remote
    else:
        reply = load_local_judge(config.path, config.max_new_tokens)

    def ask(answer: str) -> Verdict:
        text = reply(judge_messages(question, answer))
        return Verdict(parse_judge_reply(text), text)

    return ask
