"""The one way the server builds an OpenAI-compatible client (the LLM, hosted STT and TTS, the doctor's checks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from openai import AsyncOpenAI, Timeout

if TYPE_CHECKING:
    from pydantic import SecretStr

    from server.settings import LLMSettings

# The openai client refuses to start without a key, and without one it would read OPENAI_API_KEY from the
# environment and send it to whatever server is configured: a placeholder keeps secrets where they were put.
NO_API_KEY = "not-needed"


def openai_client(base_url: str, api_key: SecretStr | None, timeout_secs: float, max_retries: int) -> AsyncOpenAI:
    """A client whose every call gives up after `timeout_secs` (the SDK's own default is 10 minutes)."""
    return AsyncOpenAI(
        api_key=api_key.get_secret_value() if api_key is not None else NO_API_KEY,
        base_url=base_url,
        timeout=Timeout(timeout_secs, connect=min(5.0, timeout_secs)),
        max_retries=max_retries,
    )


def llm_client(llm: LLMSettings) -> AsyncOpenAI:
    """The process's one LLM client, shared by every lesson, with the configured timeout and retries."""
    return openai_client(llm.base_url, llm.api_key, llm.timeout_secs, llm.max_retries)
