"""What more than one benchmark's command line needs: small argument parsers."""

from __future__ import annotations

import argparse


def key_value(text: str) -> tuple[str, str]:
    """An argparse type for KEY=VALUE options (extra environment for a server under test)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value
