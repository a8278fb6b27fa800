"""Scoring backends behind the one Scorer interface: local ONNX Runtime, DashScope, a qwen-rerank endpoint."""
