"""Inference engines behind one small protocol; each runs only inside a worker process."""
