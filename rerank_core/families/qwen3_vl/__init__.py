"""Qwen3-VL-Reranker (text and images; issue #51), arriving in parts: its image input so far (pixels.py)."""
