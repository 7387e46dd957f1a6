"""Shared wire types, configuration, SSE and error helpers."""
