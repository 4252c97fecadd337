"""Helpers for tests and benchmarks: a scripted LLM server, synthesized speech and a browser-like WebRTC client."""
