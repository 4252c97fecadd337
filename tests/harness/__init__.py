"""Tests of the shared harness (harness/): its stand-ins behave like what they replace."""
