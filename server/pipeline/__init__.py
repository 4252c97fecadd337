"""The local voice pipeline: one pipecat pipeline per live lesson over WebRTC."""
