"""Adapters that put rerank_core behind other libraries' reranker interfaces."""
