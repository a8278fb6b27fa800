"""The official Qwen3-Reranker transformers recipe (QwenLM/Qwen3-Embedding): the oracle of parity tests and benches."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rerank_core.families.qwen3.template import PREFIX, SUFFIX, format_content


class OfficialRecipe:
    """The recipe on a checkpoint: full logits, left padding, log_softmax over [no, yes] at the last position."""

    def __init__(self, checkpoint: str | Path, threads: int | None = None, device: str = "cpu", dtype: str = "float32"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint, padding_side="left")
        self.model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=getattr(torch, dtype)).to(device).eval()
        self.yes_id = self.tokenizer.convert_tokens_to_ids("yes")
        self.no_id = self.tokenizer.convert_tokens_to_ids("no")
        self.prefix = self.tokenizer.encode(PREFIX, add_special_tokens=False)
        self.suffix = self.tokenizer.encode(SUFFIX, add_special_tokens=False)

    def score(self, pairs, instruction=None, max_length=8192, padding_side="left", batch_size=None):
        """Scores of `pairs` in fixed batches taken in input order (all at once when batch_size is None)."""
        size = batch_size or max(1, len(pairs))
        out = []
        for start in range(0, len(pairs), size):
            texts = [format_content(q, d, instruction) for q, d in pairs[start : start + size]]
            out.append(self._score_texts(texts, max_length, padding_side))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def score_ids(self, ids: list[list[int]]) -> np.ndarray:
        """Scores of sequences already built (template included), e.g. one long document's windows."""
        return self._score_ids(ids, "left")

    def token_ids(self, pairs, instruction=None, max_length=8192) -> list[list[int]]:
        """Each pair's ids as the recipe builds them: prefix + content cut to fit max_length + suffix."""
        return self._ids([format_content(q, d, instruction) for q, d in pairs], max_length)

    def _ids(self, texts, max_length):
        inputs = self.tokenizer(
            texts,
            padding=False,
            truncation="longest_first",
            return_attention_mask=False,
            max_length=max_length - len(self.prefix) - len(self.suffix),
        )
        return [self.prefix + ids + self.suffix for ids in inputs["input_ids"]]

    def _score_texts(self, texts, max_length, padding_side):
        return self._score_ids(self._ids(texts, max_length), padding_side)

    def _score_ids(self, ids, padding_side):
        torch = self._torch
        inputs = {"input_ids": [list(map(int, row)) for row in ids]}
        self.tokenizer.padding_side = padding_side
        try:
            batch = self.tokenizer.pad(inputs, padding=True, return_tensors="pt")
        finally:
            self.tokenizer.padding_side = "left"
        with torch.no_grad():
            logits = self.model(**batch.to(self.device)).logits[:, -1, :].float()
        pair = torch.stack([logits[:, self.no_id], logits[:, self.yes_id]], dim=1)
        return torch.nn.functional.log_softmax(pair, dim=1)[:, 1].exp().cpu().numpy()
