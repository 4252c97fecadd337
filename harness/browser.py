"""Debian's Chromium with the flags a headless lesson needs: fake microphone, no sandbox, no first-run noise."""

from __future__ import annotations

import os

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_args(fake_audio: str | os.PathLike[str] | None = None) -> list[str]:
    """Chromium's flags; with `fake_audio`, that WAV (looped by Chromium) is the microphone."""
    args = list(CHROMIUM_ARGS)
    if fake_audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={fake_audio}")
    return args
