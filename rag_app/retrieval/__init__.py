"""Retrieval stages: lexical, dense, fusion and reranking."""
