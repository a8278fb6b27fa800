"""The online rerank endpoint: a Ray Serve deployment behind a FastAPI ingress."""
