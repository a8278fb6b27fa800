"""The scoring heads the exporter traces: a Qwen3 body with l_yes − l_no read at one position, one module per layout.

Imported only when exporting (it needs torch, the export extra).
"""

from __future__ import annotations

import torch


class LastTokenLogit(torch.nn.Module):
    """input_ids, attention_mask → l_yes − l_no at the last position; only that position is normed and projected."""

    def __init__(self, causal_lm, yes_id: int, no_id: int):
        super().__init__()
        self.body = causal_lm.model
        self.final_norm = self.body.norm
        self.body.norm = torch.nn.Identity()  # normed below, on the last position only
        weight = causal_lm.lm_head.weight
        self.register_buffer("direction", (weight[yes_id] - weight[no_id]).detach().clone())

    def forward(self, input_ids, attention_mask):
        """[batch] float32 logits l_yes − l_no at the last position."""
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        last = self.final_norm(hidden[:, -1, :])
        return (last @ self.direction).float()


class FullLogits(torch.nn.Module):
    """The naive graph third parties ship: full [batch, seq, vocab] logits, with position_ids as an input."""

    def __init__(self, causal_lm):
        super().__init__()
        self.lm = causal_lm

    def forward(self, input_ids, attention_mask, position_ids):
        """[batch, seq, vocab] float32 logits."""
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
        return out.logits.float()


class RightPaddedHead(torch.nn.Module):
    """A Qwen3 body and the yes−no direction; subclasses read the logit at each row's `last_index`."""

    def __init__(self, causal_lm, yes_id: int, no_id: int):
        super().__init__()
        self.body = causal_lm.model
        weight = causal_lm.lm_head.weight
        self.register_buffer("direction", (weight[yes_id] - weight[no_id]).detach().clone())


class CausalLastTokenLogit(RightPaddedHead):
    """input_ids (right-padded), last_index → l_yes − l_no at each row's last real token.

    The GPU graph: with right padding a causal mask alone is exact (real tokens never see the pads after
    them), so attention is one `scaled_dot_product_attention(is_causal=True)` per layer, exported as ONNX's
    fused `Attention` op (opset 23, grouped KV heads) with no mask tensor to build; positions are 0..S-1 for
    every row. Pad rows' outputs are never read.
    """

    def forward(self, input_ids, last_index):
        """[batch] float32 logits l_yes − l_no at position last_index of each row."""
        hidden, cos, sin = _embed(self.body, input_ids, 0)
        for layer in self.body.layers:
            q, k, v = _qkv(layer.self_attn, layer.input_layernorm(hidden), cos, sin)
            out = torch.nn.functional.scaled_dot_product_attention(
                q, k, v, is_causal=True, scale=layer.self_attn.scaling, enable_gqa=True
            )
            hidden = _finish_layer(layer, hidden, out)
        return _logit_at(self.body, hidden, last_index, self.direction)


class PrefixLastTokenLogit(RightPaddedHead):
    """input_ids (right-padded continuation), last_index, past K/V of a shared prefix → logit and the new K/V.

    Every row continues the same prefix: past_key_i/past_value_i are [1, kv_heads, P, head_dim] and broadcast
    over the batch; positions are P..P+S-1; token i sees the whole prefix and tokens ≤ i of its own row (right
    padding: pads come after every real token, so they change nothing). With P = 0 this is the whole
    sequence. Outputs key_i/value_i ([batch, kv_heads, S, head_dim]) extend a prefix for the next call.
    """

    def forward(self, input_ids, last_index, past):
        """(logit [batch], key_0, value_0, key_1, …) for continuations of the prefix whose K/V is `past`."""
        hidden, cos, sin = _embed(self.body, input_ids, past[0].shape[2])
        hidden, present = continue_prefix(self.body.layers, hidden, cos, sin, past)
        return (_logit_at(self.body, hidden, last_index, self.direction), *present)


def continue_prefix(layers, hidden, cos, sin, past, after_layer=None):
    """(hidden states after `layers`, the new tokens' K/V per layer) of right-padded rows `hidden` continuing the
    prefix whose K/V is `past` ([1, kv_heads, P, head_dim] each, broadcast over the batch): token i sees the whole
    prefix and tokens ≤ i of its own row. `after_layer(i, hidden)`, where given, changes each layer's output."""
    batch, seq = hidden.shape[:2]
    past_len = past[0].shape[2]
    own = torch.arange(seq, device=hidden.device).unsqueeze(1)
    visible = torch.arange(past_len + seq, device=hidden.device).unsqueeze(0) <= own + past_len
    present = []
    for i, layer in enumerate(layers):
        q, k, v = _qkv(layer.self_attn, layer.input_layernorm(hidden), cos, sin)
        present += [k, v]
        k = torch.cat([past[2 * i].expand(batch, -1, -1, -1), k], dim=2)
        v = torch.cat([past[2 * i + 1].expand(batch, -1, -1, -1), v], dim=2)
        out = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=visible, scale=layer.self_attn.scaling, enable_gqa=True
        )
        hidden = _finish_layer(layer, hidden, out)
        if after_layer is not None:
            hidden = after_layer(i, hidden)
    return hidden, present


class FusedLastTokenLogit(RightPaddedHead):
    """input_ids (right-padded), last_index → l_yes − l_no, on ONNX Runtime's fused operators (layout `fused`).

    What `causal` computes, with fewer and larger kernels: q, k and v projected by one GEMM and gate + up by one
    (weights concatenated here); each residual add fused with the RMSNorm after it (`SkipSimplifiedLayerNormalization`);
    attention is `GroupQueryAttention` on the packed QKV — grouped K/V heads read as they are, Qwen3's per-head q/k
    RMSNorm and RoPE applied inside (`q_norm_weight`, `k_norm_weight`, `do_rotary` from cos/sin tables of every
    position), causal, each row's keys ending at its `last_index` (`seqlens_k`). The final norm and the yes−no
    direction run on each row's last real token only. Traced for export: its forward is not runnable eagerly.
    """

    def __init__(self, causal_lm, yes_id: int, no_id: int):
        super().__init__(causal_lm, yes_id, no_id)
        config = causal_lm.config
        for layer in self.body.layers:
            attn, mlp = layer.self_attn, layer.mlp
            attn.qkv_weight = torch.nn.Parameter(
                torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]).detach(), requires_grad=False
            )
            mlp.gate_up_weight = torch.nn.Parameter(
                torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).detach(), requires_grad=False
            )
            del attn.q_proj, attn.k_proj, attn.v_proj, mlp.gate_proj, mlp.up_proj
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", config.hidden_size // config.num_attention_heads)
        self.eps = config.rms_norm_eps
        weight = self.direction
        positions = torch.arange(config.max_position_embeddings).unsqueeze(0)
        cos, sin = self.body.rotary_emb(weight.new_zeros(1, 1, 1), positions)  # [1, P, head_dim], halves repeated
        self.register_buffer("cos_cache", cos[0, :, : self.head_dim // 2].to(weight.dtype).contiguous())
        self.register_buffer("sin_cache", sin[0, :, : self.head_dim // 2].to(weight.dtype).contiguous())

    def forward(self, input_ids, last_index):
        """[batch] float32 logits l_yes − l_no at position last_index of each row."""
        seqlens_k = last_index.to(torch.int32)
        total = torch.full((), input_ids.shape[1], dtype=torch.int32)
        residual, delta = self._layers(
            self.body.embed_tokens(input_ids), lambda attn, x: self._attend(attn, x, seqlens_k, total)
        )
        index = last_index.view(-1, 1, 1).expand(-1, 1, residual.shape[-1])
        last = torch.gather(residual, 1, index).squeeze(1) + torch.gather(delta, 1, index).squeeze(1)
        return (self.body.norm(last) @ self.direction).float()

    def _layers(self, residual, attend):
        """(residual stream, last layer's MLP output) after every layer, each residual add fused with the next norm;
        `attend(self_attn, normed)` is a layer's attention block."""
        delta = None
        for layer in self.body.layers:
            if delta is None:
                normed = layer.input_layernorm(residual)
            else:
                normed, residual = self._add_norm(delta, residual, layer.input_layernorm.weight)
            delta = attend(layer.self_attn, normed)
            normed, residual = self._add_norm(delta, residual, layer.post_attention_layernorm.weight)
            gate, up = (normed @ layer.mlp.gate_up_weight.T).chunk(2, dim=-1)
            delta = layer.mlp.down_proj(torch.nn.functional.silu(gate) * up)
        return residual, delta

    def _attention_attributes(self, attn) -> dict:
        """GroupQueryAttention's and PagedAttention's shared attributes: heads, scale, RoPE, q/k norm epsilon."""
        return {
            "num_heads": self.heads,
            "kv_num_heads": self.kv_heads,
            "scale": float(attn.scaling),
            "do_rotary": 1,
            "rotary_interleaved": 0,
            "qk_norm_epsilon": float(attn.q_norm.variance_epsilon),
        }

    def _add_norm(self, delta, residual, weight):
        """(RMSNorm(residual + delta) · weight, residual + delta) in one fused kernel."""
        normed, _, _, summed = torch.onnx.ops.symbolic_multi_out(
            "com.microsoft::SkipSimplifiedLayerNormalization",
            (delta, residual, weight),
            {"epsilon": self.eps},
            dtypes=(delta.dtype, torch.float32, torch.float32, delta.dtype),
            shapes=(delta.shape, (*delta.shape[:-1], 1), (*delta.shape[:-1], 1), delta.shape),
            version=1,
        )
        return normed, summed

    def _attend(self, attn, x, seqlens_k, total):
        """The attention block: one QKV projection, then GroupQueryAttention on the packed QKV with Qwen3's per-head
        q/k RMSNorm and RoPE inside (its `q_norm_weight` and `k_norm_weight`: CUDA only; other providers run the
        same graph with those norms split out, `backends/onnx/cuda_only.py`), then the output projection."""
        qkv = x @ attn.qkv_weight.T
        out = torch.onnx.ops.symbolic(
            "com.microsoft::GroupQueryAttention",
            (qkv, None, None, None, None, seqlens_k, total, self.cos_cache, self.sin_cache)
            + (None,) * 5  # position_ids, attention_bias, head_sink, k_scale, v_scale
            + (attn.q_norm.weight, attn.k_norm.weight),
            self._attention_attributes(attn),
            dtype=qkv.dtype,
            shape=(*qkv.shape[:-1], self.heads * self.head_dim),
            version=1,
        )
        return attn.o_proj(out)


class PagedLastTokenLogit(FusedLastTokenLogit):
    """Packed tokens (no padding) of several sequences and a block K/V cache → l_yes − l_no at `last_index` (`paged`).

    `fused`'s projections and norms on one [tokens, hidden] stream holding every sequence of the call back to back
    (`cumulative_sequence_length`); attention is ONNX Runtime's `PagedAttention` (Flash on CUDA: grouped K/V read as
    they are, Qwen3's q/k norms and RoPE inside), which writes each token's K/V into the cache blocks its sequence's
    `block_table` row names, at positions `past_seqlens` onwards, and attends over the cache. A sequence whose table
    starts with another sequence's blocks (and whose `past_seqlens` counts them) continues that sequence's tokens:
    a shared prefix computed once in the call. The cache is scratch, one buffer for every layer (each layer writes
    before it reads); `attention_metadata` bounds the lengths on the host so CUDA never reads them back.
    """

    def forward(
        self,
        input_ids,
        cumulative_sequence_length,
        past_seqlens,
        block_table,
        key_cache,
        value_cache,
        attention_metadata,
        last_index,
    ):
        """[scored] float32 logits l_yes − l_no at the packed positions `last_index`."""
        lengths = (cumulative_sequence_length, past_seqlens, block_table, attention_metadata)
        caches = [key_cache, value_cache]  # each layer's attention takes the caches the layer before left

        def attend(attn, x):
            out, caches[:] = self._attend_paged(attn, x, caches, lengths)
            return out

        residual, delta = self._layers(self.body.embed_tokens(input_ids), attend)
        last = residual.index_select(0, last_index) + delta.index_select(0, last_index)
        return (self.body.norm(last) @ self.direction).float()

    def _attend_paged(self, attn, x, caches, lengths):
        """(attention block output, the caches after this layer wrote them): one QKV projection, PagedAttention on
        the packed QKV with q/k norms and RoPE inside (CUDA only; other providers run `backends/onnx/cuda_only.py`'s
        standard equivalent), then the output projection."""
        cumulative, past, table, metadata = lengths
        qkv = x @ attn.qkv_weight.T
        key_cache, value_cache = caches
        out, key_cache, value_cache = torch.onnx.ops.symbolic_multi_out(
            "com.microsoft::PagedAttention",
            (qkv, None, None, key_cache, value_cache, cumulative, past, table, self.cos_cache, self.sin_cache)
            + (None, None)  # slot_mapping (derived from past_seqlens and the table), head_sink
            + (attn.q_norm.weight, attn.k_norm.weight, None, None, metadata),
            self._attention_attributes(attn),
            dtypes=(qkv.dtype, key_cache.dtype, value_cache.dtype),
            shapes=((qkv.shape[0], self.heads * self.head_dim), key_cache.shape, value_cache.shape),
            version=1,
        )
        return attn.o_proj(out), (key_cache, value_cache)


def _embed(body, input_ids, start):
    """Token embeddings and the rotary cos/sin of positions start..start+S-1, one row of them per batch row."""
    hidden = body.embed_tokens(input_ids)
    positions = (torch.arange(input_ids.shape[1], device=input_ids.device) + start).unsqueeze(0)
    cos, sin = body.rotary_emb(hidden, positions)
    # One row of cos/sin per batch row: ONNX Runtime's RotaryEmbedding (which the exporter may fuse this into)
    # does not broadcast them over the batch.
    batch = input_ids.shape[0]
    return hidden, cos.expand(batch, -1, -1).unsqueeze(1), sin.expand(batch, -1, -1).unsqueeze(1)


def _qkv(attn, x, cos, sin):
    shape = (*x.shape[:-1], -1, attn.head_dim)
    q = attn.q_norm(attn.q_proj(x).view(shape)).transpose(1, 2)
    k = attn.k_norm(attn.k_proj(x).view(shape)).transpose(1, 2)
    v = attn.v_proj(x).view(shape).transpose(1, 2)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin, v


def _finish_layer(layer, hidden, attended):
    """Residual adds around the attention output projection and the MLP."""
    shape = hidden.shape
    hidden = hidden + layer.self_attn.o_proj(attended.transpose(1, 2).reshape(*shape[:-1], -1))
    return hidden + layer.mlp(layer.post_attention_layernorm(hidden))


def _logit_at(body, hidden, last_index, direction):
    index = last_index.view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
    last = body.norm(torch.gather(hidden, 1, index).squeeze(1))
    return (last @ direction).float()


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


# The module traced for each graph layout.
HEADS = {
    "plain": LastTokenLogit,
    "full_logits": FullLogits,
    "causal": CausalLastTokenLogit,
    "past_kv": PrefixLastTokenLogit,
    "fused": FusedLastTokenLogit,
    "paged": PagedLastTokenLogit,
}
