"""Deterministic random-weight Qwen3-VL rerankers in the Hub's layout, for tests and demos (their scores mean
nothing): a small Qwen3VLForConditionalGeneration — ViT with DeepStack, merger, Qwen3 decoder with interleaved mRoPE —
with Qwen's real vocabulary, the vision tokens special as in Qwen3-VL's tokenizer_config.json."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .cache_dir import build_once, cache_root
from .quiet_export import quiet_export
from .qwen_tokenizer import ADDED_TOKENS, VOCAB_SIZE, qwen_tokenizer

# `builtin:tiny-qwen3-vl-reranker` is made on first use (with the export extra) rather than shipped: Qwen's
# vocabulary alone makes its embeddings 39 MB. Bump the version when the model changes.
TINY_VL_NAME, TINY_VL_VERSION = "tiny-qwen3-vl-reranker", "1"

# Qwen3-VL's additional special tokens (Qwen's special added tokens but <|endoftext|>, its pad): with the pad, its
# tokenizer's all_special_ids.
VL_SPECIAL_TOKENS = [token for token, special in ADDED_TOKENS if special and token != "<|endoftext|>"]
TINY_TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,  # DeepStack adds to the first layers' outputs: more layers than visual features
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    vocab_size=VOCAB_SIZE,
    max_position_embeddings=32768,
    # 8 rotary frequencies per head split 4/2/2 over time, height and width (Qwen3-VL: 24/20/20 of 64), interleaved
    rope_parameters={
        "rope_type": "default",
        "rope_theta": 5_000_000.0,
        "mrope_section": [4, 2, 2],
        "mrope_interleaved": True,
    },
)
TINY_VISION = dict(
    depth=3,
    hidden_size=32,
    intermediate_size=64,
    num_heads=2,
    out_hidden_size=64,
    num_position_embeddings=64,  # an 8 × 8 learned grid, interpolated to each image
    deepstack_visual_indexes=[0, 1],
    patch_size=16,
    spatial_merge_size=2,
    temporal_patch_size=2,
)
# Qwen3-VL-Reranker-2B's shape as its public config gives it (for benchmarks): text 28 layers × 2,048, ViT 24 blocks
# × 1,024, DeepStack after ViT blocks 5, 11 and 17.
FULL_SIZE_TEXT = dict(
    hidden_size=2048,
    intermediate_size=6144,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    vocab_size=VOCAB_SIZE,
    max_position_embeddings=262144,
    rope_parameters={
        "rope_type": "default",
        "rope_theta": 5_000_000.0,
        "mrope_section": [24, 20, 20],
        "mrope_interleaved": True,
    },
)
FULL_SIZE_VISION = dict(
    depth=24,
    hidden_size=1024,
    intermediate_size=4096,
    num_heads=16,
    out_hidden_size=2048,
    num_position_embeddings=2304,
    deepstack_visual_indexes=[5, 11, 17],
    patch_size=16,
    spatial_merge_size=2,
    temporal_patch_size=2,
)
# Qwen3-VL's chat template, as much as a reranker prompt uses: text parts as they are, an image as its markers.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_vl_checkpoint(out_dir: str | Path, *, seed: int = 0, full_size: bool = False) -> Path:
    """Write a random-weight Qwen3-VL checkpoint (config, safetensors, tokenizer, preprocessor and chat template)
    to `out_dir`, laid out as Qwen/Qwen3-VL-Reranker-2B is on the Hub; `full_size`: with that model's shape, its
    weights stored in bf16 as Qwen's are."""
    import torch
    from transformers import PreTrainedTokenizerFast, Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    out = Path(out_dir)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=qwen_tokenizer(),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=VL_SPECIAL_TOKENS,
        padding_side="left",
    )
    text, vision = (FULL_SIZE_TEXT, FULL_SIZE_VISION) if full_size else (TINY_TEXT, TINY_VISION)
    config = Qwen3VLConfig(
        text_config=dict(text, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id),
        vision_config=dict(vision),
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    with torch.no_grad():  # norm weights start at 1; distinct ones make a swapped or skipped norm change scores
        for name, weight in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("norm1.weight") or name.endswith("norm2.weight"):
                weight.uniform_(0.5, 1.5)
    if full_size:
        model = model.to(torch.bfloat16)
    with quiet_export():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    Qwen2VLImageProcessorPil(
        patch_size=16,
        merge_size=2,
        temporal_patch_size=2,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
        size={"shortest_edge": 64 * 32 * 32, "longest_edge": 16384 * 32 * 32},  # as Qwen3-VL publishes it
    ).save_pretrained(out)
    (out / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}, indent=2))
    return out


def tiny_vl_checkpoint(cache_dir: str | Path | None = None) -> Path:
    """The built-in tiny VL checkpoint (seed 0), made once under the cache root (`cache_dir`, $QWEN_RERANK_CACHE)."""
    root = cache_root(cache_dir) / "builtin"
    final = root / f"{TINY_VL_NAME}-{TINY_VL_VERSION}"

    def build(out: Path) -> None:
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError:
            raise ImportError(
                f"builtin:{TINY_VL_NAME} is made on first use and needs the export extra: "
                "pip install 'qwen-rerank[export]'"
            ) from None
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        build_vl_checkpoint(staging)
        staging.chmod(0o755)
        staging.rename(out)

    build_once(final, "config.json", build)
    return final
