"""The modules the exporter traces for Qwen3-VL (imported only when exporting: torch): the vision encoder with every
grid-derived input given, and the decoder as a past-K/V scoring head with image features and DeepStack by index."""

from __future__ import annotations

import torch

from ..qwen3.heads import _logit_at, continue_prefix

# transformers routes attention with per-image spans (cu_seqlens) only to implementations named "flash…"; this one is
# SDPA over every patch of the call, which traces without the split by `cu_seqlens.tolist()`.
IMAGE_ATTENTION = "flash_one_image_sdpa"


def image_attention(module, query, key, value, attention_mask=None, scaling=None, **_):
    """Attention over all the patches of a call, which hold one image (the layout's rule): [1, heads, n, d] → [1, n,
    heads, d]. Unmasked, ONNX Runtime's CPU kernel ran a block at 3,520 patches in 375 ms against 443 ms with the
    block mask an image per span needs (docs/benchmarks.md)."""
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


class VisionEncoder(torch.nn.Module):
    """Patches and their grid-derived inputs (vision_inputs.py) → merged image features and DeepStack features."""

    def __init__(self, visual):
        super().__init__()
        self.visual = visual

    def forward(self, pixel_values, interp_indices, interp_weights, rotary_ids, cu_seqlens):
        """(image_features [tokens, hidden], deepstack [layers, tokens, hidden])."""
        out = self.visual(
            pixel_values,
            grid_thw=None,  # every input it would derive from the grid is given
            interp_indices=interp_indices,
            interp_weights=interp_weights,
            position_ids=rotary_ids,
            cu_seqlens=cu_seqlens,
            max_seqlen=1,  # read by flash kernels only
        )
        return out.pooler_output, torch.stack(out.deepstack_features)


class MropePrefixLogit(torch.nn.Module):
    """Right-padded continuations of a shared prefix → l_yes − l_no at each row's `last_index` and the new K/V.

    Qwen3's past-K/V head (qwen3/heads.py: PrefixLastTokenLogit) on the VL decoder: the embeddings at
    `image_positions` (flat indices into [batch, seq]) are the image features; after each of the first decoder
    layers that layer's DeepStack features are added there; rotary positions are the given 3-D ones (mRoPE,
    interleaved), not a count.
    """

    def __init__(self, model, yes_id: int, no_id: int, deepstack_layers: int):
        super().__init__()
        self.body = model.model.language_model
        weight = model.lm_head.weight
        self.register_buffer("direction", (weight[yes_id] - weight[no_id]).detach().clone())
        self.deepstack_layers = deepstack_layers

    def forward(self, input_ids, position_ids, image_positions, image_features, deepstack, last_index, past):
        """(logit [batch], key_0, value_0, key_1, …) for continuations of the prefix whose K/V is `past`."""
        embeds = self.body.embed_tokens(input_ids)
        width = embeds.shape[-1]
        hidden = embeds.reshape(-1, width).index_put((image_positions,), image_features).reshape(embeds.shape)
        cos, sin = self.body.rotary_emb(hidden, position_ids)

        def add_deepstack(i, hidden):
            if i >= self.deepstack_layers:
                return hidden
            # Gathered, added and put back (each position once): an accumulating put is a ScatterND with reduction
            # 'add', which ONNX Runtime's CPU provider has no f16 kernel for.
            flat = hidden.reshape(-1, width)
            flat = flat.index_put((image_positions,), flat[image_positions] + deepstack[i])
            return flat.reshape(hidden.shape)

        hidden, present = continue_prefix(
            self.body.layers, hidden, cos.unsqueeze(1), sin.unsqueeze(1), past, add_deepstack
        )
        return (_logit_at(self.body, hidden, last_index, self.direction), *present)
