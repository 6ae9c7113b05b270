"""Dense (FAISS) and lexical (bm25s) indexes, their manifest and versioned snapshots."""
