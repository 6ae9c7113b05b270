"""rag_app: document question answering with hybrid retrieval, reranking and checked citations."""

__version__ = "0.1.0"
