"""Scoring backends: local ONNX Runtime Qwen3 and the hosted DashScope TextReRank service."""
