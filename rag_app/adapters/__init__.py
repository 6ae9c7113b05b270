"""Adapters exposing the pipeline to other frameworks (imported explicitly; each needs its framework)."""
