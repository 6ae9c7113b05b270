"""Streamlit chat UI over `RagPipeline` (run it with `rag-app ui`).

`app.py` is the page script; `components.py` holds the pieces it renders and the pure helpers
(file-name sanitising, escaping, tables) that tests can call without a browser.
"""
