"""A chat-completions server on 127.0.0.1 for the labelling tests: the OpenAI protocol over real HTTP, with
answers that depend on the prompt, so that a wrong prompt or a wrong scoring makes a test fail.

- A labelling prompt is answered with the word marked << >> most often in its ACTIVE excerpts.
- A detection prompt is answered, per excerpt, 1 if the label's word occurs in it.
- A fuzzing prompt is answered, per excerpt, 1 if the label's word is inside a << >> mark.

``script`` holds what to do to the next requests instead (a status with ``Retry-After``, a hang, a reply that is
not JSON, a malformed body); ``latency`` and ``rate_429`` slow every request or refuse a share of them; ``echo``
makes the server repeat (parts of) the client's key in its errors and replies, as a careless or hostile server
might. Every request is recorded.
"""
from __future__ import annotations

import collections
import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORD = re.compile(r"\w+")
MARKED = re.compile(r"<<(.*?)>>")
NUMBERED = re.compile(r"^(\d+)\. (.*)$", re.MULTILINE)
DESCRIBED = re.compile(r'described as: "(.*?)"')


def kind_of(prompt: str) -> str:
    if "\nACTIVE\n" in prompt:
        return "label"
    return "fuzzing" if "some tokens are between << and >>" in prompt else "detection"


def answer(prompt: str) -> str:
    """The reply a perfectly literal model would give (see the module docstring)."""
    kind = kind_of(prompt)
    if kind == "label":
        active = prompt.split("\nACTIVE\n", 1)[1].split("\nSILENT\n", 1)[0]
        words = collections.Counter(w.lower() for mark in MARKED.findall(active) for w in WORD.findall(mark))
        word = min(words, key=lambda w: (-words[w], w)) if words else "nothing"
        return json.dumps({"label": word, "brief_description": f"The word '{word}'.",
                           "detailed_explanation": f"Fires on '{word}'."})
    word = DESCRIBED.search(prompt).group(1).lower()
    excerpts = [text for _, text in NUMBERED.findall(prompt.split("\n\n", 2)[2])]
    if kind == "detection":
        verdicts = [int(word in text.lower()) for text in excerpts]
    else:
        verdicts = [int(any(word in mark.lower() for mark in MARKED.findall(text))) for text in excerpts]
    return json.dumps({"verdicts": verdicts})


@dataclass
class Request:
    kind: str
    prompt: str
    messages: list
    authorization: str
    status: int


@dataclass
class FakeLLM:
    """The server's state; ``url`` is the base URL to give the client."""

    script: list = field(default_factory=list)
    """What to do to the next requests, in order: ``("status", code, retry_after)``, ``("hang", seconds)``,
    ``("text", content)`` (a 200 reply with this content), ``("patch", fields)`` (the proper reply with these
    top-level fields replaced, e.g. ``{"usage": {"prompt_tokens": "many"}}``), ``("raw", data)`` (a 200 reply
    whose body is exactly these bytes)."""
    latency: float = 0.0
    rate_429: float = 0.0
    echo: Callable[[str], str] | None = None
    """Given the key the client sent, text the server puts into every error message and every reply's
    label, description and explanation."""
    requests: list[Request] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def count(self, kind: str, status: int = 200) -> int:
        return sum(1 for r in self.requests if r.kind == kind and r.status == status)


def _handler(state: FakeLLM):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def handle(self):
            try:
                super().handle()
            except (BrokenPipeError, ConnectionResetError):  # a client that timed out and left
                pass

        def _send(self, status: int, body: dict | bytes, headers: dict | None = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            messages = body["messages"]
            prompt = next(m["content"] for m in messages if m["role"] == "user")
            with state.lock:
                step = state.script.pop(0) if state.script else None
                refused = step is None and state.rng.random() < state.rate_429
            status, content = 200, None
            key = self.headers.get("Authorization", "").removeprefix("Bearer ")
            echoed = state.echo(key) if state.echo else ""
            if step and step[0] == "status":
                status = step[1]
            elif step and step[0] == "text":
                content = step[1]
            if refused:
                status, step = 429, ("status", 429, "0")
            # Recorded on arrival: a request the client gave up on (a hang) counts too.
            state.requests.append(Request(kind_of(prompt), prompt, messages, self.headers.get("Authorization", ""),
                                          0 if step and step[0] == "hang" else status))
            time.sleep(step[1] if step and step[0] == "hang" else state.latency)
            if status != 200:
                headers = {"Retry-After": step[2]} if len(step) > 2 and step[2] is not None else {}
                self._send(status, {"error": {"message": f"scripted {status} {echoed}".strip(), "type": "test"}},
                           headers)
                return
            if step and step[0] == "raw":
                self._send(200, step[1])
                return
            content = answer(prompt) if content is None else content
            if len(messages) > 2 and step is None:  # a repair turn: answer properly
                content = answer(prompt)
            if echoed and step is None and kind_of(prompt) == "label":
                content = json.dumps({name: f"{value} {echoed}" for name, value in json.loads(content).items()})
            reply = {
                "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(content) // 4,
                          "total_tokens": len(prompt) // 4 + len(content) // 4},
            }
            self._send(200, {**reply, **step[1]} if step and step[0] == "patch" else reply)

    return Handler


def start(state: FakeLLM | None = None) -> tuple[FakeLLM, ThreadingHTTPServer]:
    """Serve ``state`` on a free port of 127.0.0.1 in a daemon thread; ``server.shutdown()`` stops it."""
    state = state or FakeLLM()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return state, server


if __name__ == "__main__":  # python tests/fake_llm.py: a server for trying the README by hand
    state, server = start()
    print(state.url, flush=True)
    threading.Event().wait()
