"""Benchmarks: timed runs of the real server against stock pipecat (run as python -m bench.voice)."""
