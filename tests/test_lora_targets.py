"""LoRA targets per Omni family: adapters go where the recipe's ``lora.towers`` says and nowhere else."""

from __future__ import annotations

import pytest

from recipes.training import LoraSettings
from train.backbones import TINY_BACKBONES, load_backbone
from train.runtime import module_tower


class _Recipe:
    """The one recipe field ``lora_config`` reads."""

    def __init__(self, lora: LoraSettings):
        self.lora = lora


def _adapted(name: str, lora: LoraSettings) -> dict[str, str]:
    """Every adapted module of the PEFT-wrapped tiny thinker -> its tower."""
    from peft import get_peft_model

    from train.runtime import lora_config

    model, _ = load_backbone(name)
    peft_model = get_peft_model(model, lora_config(_Recipe(lora), model))
    out = {}
    for pname, _ in peft_model.named_parameters():
        if ".lora_A." in pname:
            module = pname.split(".lora_A.", 1)[0].removeprefix("base_model.model.").removesuffix(".base_layer")
            out[module] = module_tower(module)
    return out


@pytest.mark.parametrize("family", sorted(TINY_BACKBONES))
def test_language_model_only_by_default(family, tiny_backbones):
    adapted = _adapted(str(tiny_backbones[family]), LoraSettings(dropout=0.0))
    assert adapted and set(adapted.values()) == {"language_model"}, adapted
    from transformers import AutoConfig

    layers = AutoConfig.from_pretrained(tiny_backbones[family]).text_config.num_hidden_layers
    attention = {f"model.language_model.layers.{i}.self_attn.{p}" for i in range(layers)
                 for p in ("q_proj", "k_proj", "v_proj", "o_proj")}
    if family == "tiny-qwen3-omni":  # every layer is mixture-of-experts: fused expert weights, no dense MLP
        mlp = {f"model.language_model.layers.{i}.mlp.experts" for i in range(layers)}
    else:
        mlp = {f"model.language_model.layers.{i}.mlp.{p}" for i in range(layers)
               for p in ("gate_proj", "up_proj", "down_proj")}
    assert set(adapted) == attention | mlp


@pytest.mark.parametrize("family", sorted(TINY_BACKBONES))
def test_a_named_tower_gets_adapters_too(family, tiny_backbones):
    adapted = _adapted(str(tiny_backbones[family]), LoraSettings(dropout=0.0, target_modules=["q_proj", "k_proj"],
                                                                 towers=["language_model", "audio_tower"]))
    assert set(adapted.values()) == {"language_model", "audio_tower"}
    assert all(name.rsplit(".", 1)[-1] in ("q_proj", "k_proj") for name in adapted)
    assert not any(".visual." in f".{name}" for name in adapted)


def test_fused_gate_up_experts_get_twice_the_rank(tiny_backbones):
    """A fused gate+up expert weight holds two projections, so its adapter has rank 2r (and down_proj r).

    PEFT warns that the ``rank_pattern`` key "did not match any targeted module" because it checks module names
    only; this shows the pattern does reach the fused parameter, which is why Harken silences that warning.
    """
    from peft import get_peft_model
    from transformers import AutoConfig

    from train.runtime import lora_config

    lora = LoraSettings(dropout=0.0)
    model, _ = load_backbone(str(tiny_backbones["tiny-qwen3-omni"]))
    experts = AutoConfig.from_pretrained(tiny_backbones["tiny-qwen3-omni"]).text_config.num_experts
    peft_model = get_peft_model(model, lora_config(_Recipe(lora), model))
    rows = {tuple(p.shape) for n, p in peft_model.named_parameters()
            if ".layers.0.mlp.experts" in n and ".lora_A." in n}
    hidden = model.config.text_config.hidden_size
    inter = model.config.text_config.moe_intermediate_size
    assert rows == {(2 * lora.r * experts, hidden), (lora.r * experts, inter)}, rows
