"""The one way the server builds an OpenAI-compatible client (the LLM, hosted STT and TTS, the doctor's checks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx2
from openai import AsyncOpenAI, Timeout

if TYPE_CHECKING:
    from pydantic import SecretStr

    from server.pipeline.compute import CpuGate
    from server.pipeline.embedded_llm import EmbeddedRuntime
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


def llm_client(
    llm: LLMSettings, embedded: EmbeddedRuntime | None = None, gate: Callable[[], CpuGate | None] = lambda: None
) -> AsyncOpenAI:
    """The process's one LLM client, shared by every lesson, with the configured timeout and retries.

    With `embedded`, the client's requests are answered in-process by that runtime (nothing leaves the server),
    each token taking its turn at `gate()`, the speech models' CPU gate.
    """
    if embedded is None:
        return openai_client(llm.base_url, llm.api_key, llm.timeout_secs, llm.max_retries)
    from server.pipeline.embedded_llm import EMBEDDED_BASE_URL, EmbeddedTransport

    return AsyncOpenAI(
        api_key=NO_API_KEY,
        base_url=EMBEDDED_BASE_URL,
        # A retry would only queue the same work again on the same cores.
        max_retries=0,
        timeout=Timeout(llm.timeout_secs),
        http_client=httpx2.AsyncClient(transport=EmbeddedTransport(embedded, gate, llm.max_sentences)),
    )
