"""Qwen3-VL-Reranker (text and images; issue #51), arriving in parts: its prompt and truncation (template.py), its
image input (pixels.py), what its model derives from the prompt and the images (positions.py, vision_inputs.py),
its two ONNX graphs (export.py) and a scorer over them (scoring.py); not yet behind `Reranker`."""
