"""Activation statistics for the int8 export: the largest |input| per channel of each layer's MLP down projection."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ...quiet_export import quiet_export
from .template import PREFIX, SUFFIX, format_content

log = logging.getLogger(__name__)

# Text of the kinds a reranker reads (questions; passages of prose, lists, code, numbers, other scripts), kept apart
# from every benchmark's and test's pairs.
CALIBRATION_PAIRS = [
    (
        "how do vaccines train the immune system?",
        "Vaccines expose the body to a harmless piece of a pathogen, so "
        "B cells and T cells learn to recognise it and respond faster on a later infection.",
    ),
    (
        "best way to store fresh herbs",
        "Wrap soft herbs in a damp paper towel and keep them in the fridge; woody "
        "herbs like rosemary last longer dried.",
    ),
    (
        "python sort list of dicts by key",
        "Use sorted(items, key=lambda d: d['age']) or operator.itemgetter('age'); "
        "pass reverse=True for descending order.",
    ),
    (
        "when did the berlin wall fall",
        "On 9 November 1989 East German authorities opened the border crossings, and "
        "crowds began tearing down the wall that had divided Berlin since 1961.",
    ),
    (
        "symptoms of iron deficiency",
        "Fatigue, pale skin, shortness of breath, brittle nails and cold hands are "
        "common; a blood test of ferritin confirms it.",
    ),
    (
        "what is a p-value",
        "The probability, under the null hypothesis, of a result at least as extreme as the one "
        "observed; 0.05 is a convention, not a law.",
    ),
    (
        "cheap flights to tokyo in march",
        "Fares from Europe average 650 EUR in March; booking 8-10 weeks ahead and flying mid-week saves about 15%.",
    ),
    ("机器学习和深度学习的区别", "深度学习是机器学习的一个分支，使用多层神经网络从数据中自动学习特征。"),
    (
        "kubernetes pod stuck in pending",
        "Check `kubectl describe pod`: insufficient CPU or memory, an unbound "
        "PersistentVolumeClaim, or a node selector no node matches are the usual causes.",
    ),
    (
        "is coffee bad for your heart",
        "Moderate intake (3-4 cups a day) is not linked to heart disease in large "
        "cohort studies; very high doses can raise blood pressure briefly.",
    ),
    ("translate good morning to french", "Bonjour is used until the evening; bonsoir after about 6 pm."),
    (
        "largest moons of jupiter",
        "Ganymede (5,268 km), Callisto (4,821 km), Io (3,643 km) and Europa (3,122 km) are "
        "the four Galilean moons, discovered in 1610.",
    ),
]


def down_input_maxima(checkpoint: str | Path, pairs=CALIBRATION_PAIRS) -> np.ndarray:
    """[layers, intermediate]: max |x| per channel of each down projection's input over `pairs` (one at a time)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    with quiet_export():
        model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    prompts = [PREFIX + format_content(query, document) + SUFFIX for query, document in pairs]
    return record_down_inputs(model.model.layers, tokenizer, model, prompts)


def record_down_inputs(layers, tokenizer, forward, prompts: list[str]) -> np.ndarray:
    """[layers, intermediate]: max |x| per channel of the input of each of `layers`' MLP down projection while
    `forward` runs on each prompt, tokenized whole (one at a time)."""
    import torch

    log.info("calibrating the int8 graph's down projections on %d prompts", len(prompts))
    maxima = [torch.zeros(layer.mlp.down_proj.in_features) for layer in layers]

    def record(index):
        def hook(_module, inputs):
            values = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(dim=0)
            maxima[index] = torch.maximum(maxima[index], values)

        return hook

    handles = [layer.mlp.down_proj.register_forward_pre_hook(record(i)) for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            for text in prompts:
                forward(**tokenizer(text, return_tensors="pt", add_special_tokens=False))
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack(maxima).numpy()
