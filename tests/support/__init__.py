"""Helpers for the test suite: real processes on loopback, demo models, ports."""
