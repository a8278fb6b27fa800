"""Qwen3-VL-Reranker (text and images; issue #51), arriving in parts: its prompt and truncation (template.py) and
its image input (pixels.py) so far."""
