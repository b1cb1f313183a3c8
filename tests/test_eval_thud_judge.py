"""The judge's two kinds on a tiny random causal LM built here: in process (``local``) and behind a real
OpenAI-compatible server on 127.0.0.1 called through the ``openai`` client (``openai``); the credential rule; the
``label`` command; and the parser's accuracy on the hand-labelled answers in tests/fixtures/thud_answers.jsonl."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from eval.__main__ import main as eval_main
from eval.thud.judge import JUDGE_PROMPT, JudgeConfig, judge_credential, load_local_judge, make_judge
from eval.thud.label import label_answers, summarise
from eval.thud.parser import parse_answer
from eval.thud.prompts import FREE_FORM_PROMPT
from _judge_server import JudgeServer

ANSWERS = Path(__file__).parent / "fixtures" / "thud_answers.jsonl"


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A 2-layer random Qwen2 causal LM with the project's locally built Qwen tokenizer and chat template."""
    import torch
    import transformers

    from train.backbones import QWEN25_OMNI, _build_tokenizer

    out = tmp_path_factory.mktemp("judge_lm")
    tok = _build_tokenizer(QWEN25_OMNI)
    cfg = transformers.Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                                   eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    transformers.Qwen2ForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_parser_accuracy_on_the_hand_labelled_answers():
    rows = [json.loads(line) for line in ANSWERS.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 200
    counts = Counter(r["label"] for r in rows)
    assert min(counts.values()) >= 30 and len(counts) == 6  # every label, many phrasings each
    right = 0
    for r in rows:
        p = parse_answer(r["text"])
        right += p.label == r["label"] and (r["offset"] is None or p.offset == pytest.approx(r["offset"]))
        # Whatever else it gets wrong, the parser never reads an unreadable answer as synced.
        assert not (r["label"] == "undetermined" and p.label == "synced"), r["text"]
    assert 100 * right / len(rows) >= 95.0


def test_local_and_server_judges_give_the_same_reply(tiny_lm, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "must-not-be-sent")
    answers = ["I hear a loud thud as the man hits the ground.", "The clip shows a dog."]
    local = make_judge(JudgeConfig(kind="local", path=str(tiny_lm), max_new_tokens=8), FREE_FORM_PROMPT)
    reply = load_local_judge(str(tiny_lm), max_new_tokens=8)
    with JudgeServer(reply) as srv:
        remote = make_judge(JudgeConfig(kind="openai", url=srv.url, model="tiny", max_new_tokens=8),
                            FREE_FORM_PROMPT)
        for a in answers:
            v_local, v_remote = local(a), remote(a)
            assert v_remote.reply == v_local.reply and v_remote.parsed == v_local.parsed
        assert len(srv.requests) == 2
        headers, body = srv.requests[0]
        assert body["model"] == "tiny" and body["temperature"] == 0 and body["max_tokens"] == 8
        assert body["messages"][0]["content"] == JUDGE_PROMPT.format(question=FREE_FORM_PROMPT, answer=answers[0])
        # No api_key_env: the environment's OPENAI_API_KEY stays home.
        assert "must-not-be-sent" not in json.dumps(headers)


def test_credential_only_over_https_or_loopback(monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "s3cret")
    with JudgeServer(lambda m: '{"label": "early", "offset": 1.5}') as srv:
        judge = make_judge(JudgeConfig(kind="openai", url=srv.url, model="m", api_key_env="JUDGE_KEY"), "q")
        v = judge("The audio is early.")
        assert (v.parsed.label, v.parsed.offset) == ("early", 1.5)
        assert srv.requests[0][0]["authorization"] == "Bearer s3cret"
    for url in ("http://10.0.0.5:8000/v1", "http://judge.example.org/v1"):
        with pytest.raises(ValueError, match="https or to a loopback"):
            make_judge(JudgeConfig(kind="openai", url=url, model="m", api_key_env="JUDGE_KEY"), "q")
    assert judge_credential(JudgeConfig(kind="openai", url="https://api.example.org/v1", model="m",
                                        api_key_env="JUDGE_KEY")) == "s3cret"
    assert judge_credential(JudgeConfig(kind="openai", url="http://[::1]:8000/v1", model="m",
                                        api_key_env="JUDGE_KEY")) == "s3cret"
    with pytest.raises(ValueError, match="not set"):
        judge_credential(JudgeConfig(kind="openai", url="https://x.org/v1", model="m", api_key_env="NOPE_UNSET"))
    with pytest.raises(Exception, match="api_key"):  # the key itself is never an option
        JudgeConfig(kind="openai", url="https://x.org/v1", model="m", api_key="s3cret")
    from eval.runner import suite_plan

    with pytest.raises(ValueError, match="recipe's own judge block"):
        suite_plan(None, ["thud"], ["thud.judge.api_key_env=JUDGE_KEY"])
    from recipes.schema import RecipeError, load_recipe

    with pytest.raises(RecipeError, match="api_key_env"):  # nor through the recipe overrides of make/train
        load_recipe("demo", ["eval.suites.thud.options.judge={kind: openai, url: https://x.org/v1, model: m, "
                             "api_key_env: JUDGE_KEY}"])


def test_label_command_with_parser_and_with_a_served_judge(tmp_path, capsys):
    src = tmp_path / "answers.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(
        ["I hear a loud thud as the man hits the ground.", "The thud comes a bit after he lands.",
         "The sound arrives two seconds too late.", "A man falls off a ladder."])))
    assert eval_main(["label", "thud", str(src), "--out", str(tmp_path / "p.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [(r["id"], r["label"], r["offset"], r["by"]) for r in rows] == [
        (0, "synced", None, "parser"), (1, "delayed", None, "parser"), (2, "delayed", 2.0, "parser"),
        (3, "undetermined", None, "parser")]
    with JudgeServer(lambda m: '{"label": "delayed", "offset": null}') as srv:
        assert eval_main(["label", "thud", str(src), "--judge-url", srv.url, "--judge-model", "m"]) == 0
        assert len(srv.requests) == 4
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["by"] for r in out] == ["judge"] * 4 and [r["label"] for r in out] == ["delayed"] * 4
    assert [r["parser_label"] for r in out] == ["synced", "delayed", "delayed", "undetermined"]
    assert summarise(out)["agreement"] == {"value": 50.0, "n": 4, "ci95": pytest.approx([15.0, 85.0], abs=0.1)}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"answer": "no text field"}\n')
    assert eval_main(["label", "thud", str(bad)]) == 2
    assert "bad.jsonl:2: field 'text'" in capsys.readouterr().err
    assert label_answers([{"text": "Silent video."}])[0]["label"] == "silent"
