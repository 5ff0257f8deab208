"""Where labelling requests go: a chat-completions server, its model name and its key.

A model named ``openai/...`` goes to OpenAI, any other to OpenRouter, unless a base URL is given (argument,
or ``OPENAI_BASE_URL``), which sends every model to that server: vLLM, llama.cpp's server, Ollama, or anything
else that speaks the OpenAI chat-completions protocol. Keys come from the ``api_key`` argument, else the
environment, else a ``.env`` file in the working directory (read, never written into ``os.environ``).

A key is held as a :class:`Secret`, whose repr and str never show it: it cannot reach a store file, a log
line, an error message or a progress bar by accident. Text a server sends back (replies and errors) passes
through :meth:`Secret.scrub` before it is kept or shown, in case the server echoes the key.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..validation import with_command_line

OPENROUTER_URL = "https://openrouter.ai/api/v1"
OPENAI_PREFIX = "openai/"
NO_KEY = "not-needed"
"""Sent to a local server that asks for no key (the protocol still carries one)."""
KEY_PIECE = 8
"""Any run of this many characters of a key counts as the key: a server may echo a cut or masked key."""


class Secret:
    """A key that shows itself only to :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        """``text`` with the key, and every run of :data:`KEY_PIECE` or more of its characters, replaced by ``***``.

        Every place where some piece of the key starts is found first and the pieces' union replaced after, so
        the result never depends on the order the pieces are tried in, and a piece replaced never leaves the
        rest of the key behind. A key shorter than a piece is replaced where it occurs whole.

        >>> Secret("sk-or-v1-ab12cd34ef56-sk-or-v1").scrub("echo sk-or-v1-ab12cd34ef56-sk-or-v1, cd34ef56-sk!")
        'echo ***, ***!'
        """
        key = self._value
        if key == NO_KEY or not key:  # what is sent when there is no key: nothing to hide
            return text
        if len(key) < KEY_PIECE:
            return text.replace(key, "***")
        covered = bytearray(len(text))
        for piece in dict.fromkeys(key[i:i + KEY_PIECE] for i in range(len(key) - KEY_PIECE + 1)):
            start = text.find(piece)
            while start >= 0:
                covered[start:start + KEY_PIECE] = b"\x01" * KEY_PIECE
                start = text.find(piece, start + 1)
        out, end = [], 0
        for run in re.finditer(rb"\x01+", covered):
            out += [text[end:run.start()], "***"]
            end = run.end()
        return "".join(out) + text[end:]

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self):  # pickling would write the key into a file
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class Provider:
    """A chat-completions endpoint resolved for one model."""

    base_url: str | None
    """The server's URL; None is OpenAI's own."""
    model: str
    """The model name the server expects (``openai/`` removed for OpenAI itself)."""
    api_key: Secret
    """The key sent as a bearer token."""
    where: str
    """For messages: ``OpenAI``, ``OpenRouter`` or the base URL."""


def _settings(env_file: str | Path | None) -> dict[str, str]:
    """The environment, over the values of ``env_file`` (``.env`` in the working directory by default)."""
    from dotenv import dotenv_values

    path = Path(".env") if env_file is None else Path(env_file)
    from_file = {k: v for k, v in dotenv_values(path).items() if v} if path.is_file() else {}
    return {**from_file, **{k: v for k, v in os.environ.items() if v}}


def resolve_provider(model: str, base_url: str | None = None, api_key: str | None = None,
                     env_file: str | Path | None = None) -> Provider:
    """The endpoint, model name and key for ``model`` (see the module docstring for the rules).

    >>> resolve_provider("llama3", base_url="http://127.0.0.1:8000/v1").where
    'http://127.0.0.1:8000/v1'
    """
    if not isinstance(model, str) or not model.strip():
        raise ValueError("model must name a chat model, e.g. model='google/gemini-2.5-flash' or 'openai/gpt-4o-mini'.")
    if api_key is not None and (not isinstance(api_key, str) or not api_key):
        raise TypeError("api_key must be a non-empty string (or None to read it from the environment or .env).")
    settings = _settings(env_file)
    base_url = base_url or settings.get("OPENAI_BASE_URL")
    if base_url:
        key = api_key or settings.get("OPENAI_API_KEY") or NO_KEY
        return Provider(base_url=base_url, model=model, api_key=Secret(key), where=base_url)
    if model.startswith(OPENAI_PREFIX):
        key = api_key or settings.get("OPENAI_API_KEY") or settings.get("OPENAI_KEY")
        if not key:
            where = "set OPENAI_API_KEY (in the environment or a .env file in the working directory) or pass"
            raise with_command_line(ValueError(f"model {model!r} goes to OpenAI, which needs a key: {where} api_key=..."),
                                    f"model {model!r} goes to OpenAI, which needs a key: {where} --api-key KEY")
        return Provider(base_url=None, model=model[len(OPENAI_PREFIX):], api_key=Secret(key), where="OpenAI")
    key = api_key or settings.get("OPENROUTER_API_KEY")
    if not key:
        need = (f"model {model!r} goes to OpenRouter, which needs a key: set OPENROUTER_API_KEY (in the environment or a "
                ".env file in the working directory) or pass")
        raise with_command_line(
            ValueError(f"{need} api_key=...; for a local server pass base_url='http://127.0.0.1:8000/v1' or set "
                       "OPENAI_BASE_URL."),
            f"{need} --api-key KEY; for a local server pass --base-url http://127.0.0.1:8000/v1 or set OPENAI_BASE_URL.")
    return Provider(base_url=OPENROUTER_URL, model=model, api_key=Secret(key), where="OpenRouter")


def make_client(provider: Provider, timeout: float, max_retries: int):
    """The official async client for ``provider``. It retries 408, 409, 429, 5xx and timeouts itself, with
    exponential backoff and jitter, honouring ``Retry-After``."""
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=provider.base_url, api_key=provider.api_key.reveal(), timeout=timeout,
                       max_retries=max_retries)
