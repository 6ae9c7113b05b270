"""In-product training: fine-tune the bi-encoder and train a cross-encoder reranker on the user's data."""
