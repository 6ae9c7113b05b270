"""Ingestion: file loading, chunking and the ingest pipeline."""
