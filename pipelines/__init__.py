"""Offline scoring: a Ray Data job that reranks Parquet datasets with a pool of model actors."""
