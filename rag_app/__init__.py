"""rag_app: document question answering with hybrid retrieval, reranking and checked citations."""

import os as _os

# torch and faiss-cpu each load their own OpenMP runtime. With OpenMP's default (active) wait policy the
# idle threads of one pool spin and starve the other on a small CPU: a hybrid query on 2 cores took
# p50 120 ms / p95 611 ms, and 39 ms / 75 ms with PASSIVE (tests/test_threads.py guards it). OpenMP reads the variable
# when a runtime loads, so it has to be set before either library is imported: here, the one place every
# entry point passes through. A value the user set wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
