"""Labelling features with a language model: a label written from examples, scored on held-out ones.

One :class:`Labeller` serves a whole run: one client, one limit on concurrent requests, one count of tokens.
Requests go through the official ``openai`` client, which retries 408, 409, 429, 5xx and timeouts with
exponential backoff and jitter, honouring ``Retry-After``. A reply that is not the JSON asked for is answered
once with a repair message; a second bad reply, a reply that is not a chat completion (not UTF-8 JSON, no list
of choices, token counts that are not counts), a label a store cannot keep, or a request that still fails after
the retries, fails that feature only (:class:`LabelingError`), never the batch. Whatever a server sends back
is scrubbed of the key (:meth:`~interp_embed.labeling.provider.Secret.scrub`) before it is kept or shown.

Scoring follows the detection and fuzzing tests of automated interpretability (Paulo et al., 2024, "Automatically
Interpreting Millions of Features in Large Language Models"): *detection* shows held-out excerpts without
marks, positives and negatives mixed, and asks whether the labelled property is present; *fuzzing* shows
held-out positives once with the marks on the tokens where the feature fires and once with as many marks moved
elsewhere, and asks whether the marks sit where the label says. Several excerpts go in one request.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import math
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from ..store.labels import InvalidLabelRecord, LabelRecord
from ..validation import Int, InvalidParameterError, Number, OrNone, validate_fields
from .examples import ExampleSets
from .prompts import (PROMPT_VERSION, SYSTEM, LabelReply, ReplyError, detection_prompt, fuzzing_prompt,
                      labelling_prompt, parse_label, parse_verdicts, repair_message)
from .provider import make_client, resolve_provider

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "google/gemini-2.5-flash"
SERVER_TEXT_SHOWN = 300
"""Characters of a server's error message repeated in a feature's status."""


class LabelingError(RuntimeError):
    """One feature could not be labelled or scored (the message says why; it never holds a key)."""


class BudgetExhausted(LabelingError):
    """``max_tokens_total`` was reached: no new request is sent."""


@dataclass
class LabelingConfig:
    """How features are labelled and scored."""

    model: str = DEFAULT_MODEL
    """The chat model: ``openai/...`` goes to OpenAI, others to OpenRouter, unless ``base_url`` is set."""
    base_url: str | None = None
    """Any OpenAI-compatible server (vLLM, llama.cpp, Ollama ...); default ``OPENAI_BASE_URL`` if set."""
    k: int = 20
    """Positive examples shown to write a label, and as many negatives."""
    n_score: int = 20
    """Held-out positive examples a label is scored on, and as many negatives."""
    window_tokens: int = 48
    """Tokens per excerpt; a longer document is cut around the feature's strongest activation."""
    seed: int = 0
    """Draws the examples; the same seed draws the same examples."""
    concurrency: int = 8
    """Requests in flight at once."""
    batch_size: int = 10
    """Excerpts judged per scoring request."""
    max_retries: int = 4
    """Retries of a failed request (429, 5xx, timeout), with exponential backoff and jitter."""
    timeout: float = 60.0
    """Seconds before a request times out (and is retried)."""
    max_tokens_total: int | None = None
    """Stop sending requests once this many tokens (prompt + completion) were spent; None for no limit."""
    temperature: float = 0.0
    """Sampling temperature of the model."""

    def __post_init__(self):
        if not isinstance(self.model, str) or not self.model.strip():
            raise InvalidParameterError("model must name a chat model, e.g. 'google/gemini-2.5-flash' or 'openai/gpt-4o-mini'.")
        validate_fields(self, k=Int(min=1), n_score=Int(min=1), window_tokens=Int(min=4), seed=Int(),
                        concurrency=Int(min=1), batch_size=Int(min=1), max_retries=Int(),
                        max_tokens_total=OrNone(Int(min=1)), timeout=Number(), temperature=Number())
        if self.timeout == 0:
            raise InvalidParameterError("timeout must be positive (seconds).")


def make_config(**options) -> LabelingConfig:
    """A :class:`LabelingConfig` from keyword options, naming any option that is not one of its fields."""
    known = {f.name for f in fields(LabelingConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidParameterError(f"unknown labelling option(s) {unknown}; the options are {sorted(known)}.")
    return LabelingConfig(**options)


@dataclass
class Usage:
    """Requests sent and tokens spent, from each reply's usage."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, calls: int, prompt_tokens: int, completion_tokens: int) -> None:
        self.calls += calls
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens


@dataclass(frozen=True)
class LabelScore:
    """How well a label predicts where its feature fires, on held-out examples.

    Detection: the model reads unmarked excerpts and says whether the labelled property is present;
    positives are excerpts where the feature fires. Fuzzing: the model says whether the << >> marks sit where
    the label says, on excerpts marked correctly and excerpts with the marks moved (``fuzzing`` is the
    balanced accuracy of those answers; NaN when there were no positives).
    """

    balanced_accuracy: float
    precision: float
    recall: float
    f1: float
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int
    fuzzing: float
    verdicts: pd.DataFrame
    """One row per judged excerpt: ``test`` (detection or fuzzing), ``row`` (in the store), ``kind``,
    ``truth`` and ``verdict`` (1: the label applies)."""
    usage: Usage

    def metrics(self) -> dict[str, float]:
        """The numbers, as kept in the store."""
        return {name: (float(getattr(self, name)) if isinstance(getattr(self, name), float) else int(getattr(self, name)))
                for name in ("balanced_accuracy", "precision", "recall", "f1", "true_positives", "false_positives",
                             "true_negatives", "false_negatives", "fuzzing")
                if not (isinstance(getattr(self, name), float) and math.isnan(getattr(self, name)))}

    def __getitem__(self, key: str):
        """The original interp_embed's result keys: ``score`` (share of detection answers that were right),
        ``total_count`` (detection answers) and ``responses`` (the verdicts)."""
        detection = self.verdicts[self.verdicts.test == "detection"]
        if key == "score":
            return float((detection.truth == detection.verdict).mean()) if len(detection) else 0.0
        if key == "total_count":
            return len(detection)
        if key == "responses":
            return detection.to_dict("records")
        raise KeyError(key)


@dataclass(frozen=True)
class FeatureLabel:
    """A label written by a language model, with what it was written from and what it cost."""

    feature: int
    label: str
    brief_description: str
    detailed_explanation: str
    model: str
    prompt_version: str
    seed: int
    examples: dict[str, list[int]]
    """Store rows of the examples shown (``label_positives``, ``label_negatives``) and held out (``score_*``)."""
    usage: Usage
    score: LabelScore | None = None

    def record(self) -> LabelRecord:
        """What the store keeps of it; a LabelingError if a store cannot keep it (see ``store/labels.py``)."""
        try:
            return LabelRecord(feature=self.feature, label=self.label, source="llm",
                               brief_description=self.brief_description,
                               detailed_explanation=self.detailed_explanation, model=self.model,
                               prompt_version=self.prompt_version, seed=self.seed, examples=self.examples,
                               score=None if self.score is None else self.score.metrics(),
                               usage={"prompt_tokens": self.spent.prompt_tokens,
                                      "completion_tokens": self.spent.completion_tokens})
        except InvalidLabelRecord as err:
            raise LabelingError(f"feature {self.feature}: the label cannot be kept in a store ({err})") from None

    @property
    def spent(self) -> Usage:
        """Tokens spent on writing the label and, when it ran, on scoring it."""
        extra = self.score.usage if self.score is not None else Usage()
        return Usage(self.usage.calls + extra.calls, self.usage.prompt_tokens + extra.prompt_tokens,
                     self.usage.completion_tokens + extra.completion_tokens)


def read_reply(data: bytes) -> tuple[str | None, int, int]:
    """``(content, prompt_tokens, completion_tokens)`` of a chat-completions reply body: the first choice's
    message and the usage the server reports (0 where it reports none). A body that is not such a reply is a
    LabelingError saying what is wrong; a server's reply is input like any other."""
    try:
        body = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise LabelingError("the reply is not UTF-8 text") from None
    except (ValueError, RecursionError) as err:  # JSONDecodeError, or an integer of thousands of digits
        raise LabelingError(f"the reply is not JSON ({type(err).__name__})") from None
    if not isinstance(body, dict):
        raise LabelingError("the reply is not a JSON object")
    choices = body.get("choices")
    if not isinstance(choices, list):
        raise LabelingError("the reply's 'choices' is not a list")
    content = None
    if choices:
        message = choices[0].get("message") if isinstance(choices[0], dict) else None
        if not isinstance(message, dict):
            raise LabelingError("the reply's choices[0].message is not an object")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise LabelingError("the reply's message content is not text")
    usage = body.get("usage") or {}
    if not isinstance(usage, dict):
        raise LabelingError("the reply's 'usage' is not an object")
    counts = []
    for name in ("prompt_tokens", "completion_tokens"):
        value = usage.get(name) or 0
        if type(value) is not int or not 0 <= value < 2**63:
            shown = repr(value) if isinstance(value, (int, float)) and len(repr(value)) <= 24 else \
                f"a {type(value).__name__}"
            raise LabelingError(f"the reply's usage.{name} is {shown}, not a count of tokens")
        counts.append(value)
    return content, *counts


class Labeller:
    """Writes and scores labels for the features of datasets, with one client and one token count; used as
    ``async with Labeller(config) as labeller:`` so that its connections close with the run."""

    def __init__(self, config: LabelingConfig, api_key: str | None = None, env_file=None):
        self.config = config
        self.provider = resolve_provider(config.model, config.base_url, api_key, env_file)
        self.client = make_client(self.provider, config.timeout, config.max_retries)
        self.usage = Usage()
        self._limit: asyncio.Semaphore | None = None

    async def __aenter__(self) -> "Labeller":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.close()  # its connections belong to this event loop

    def _failure(self, message: str) -> LabelingError:
        """A LabelingError whose message may quote the server: scrubbed of the key."""
        return LabelingError(self.provider.api_key.scrub(message))

    async def _ask(self, prompt: str, parse, usage: Usage):
        """One question, answered as ``parse`` wants: a repair message after a bad reply, then a LabelingError."""
        from openai import APIError

        if self._limit is None:
            self._limit = asyncio.Semaphore(self.config.concurrency)
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        async with self._limit:
            for attempt in range(2):
                budget = self.config.max_tokens_total
                if budget is not None and self.usage.total_tokens >= budget:
                    raise BudgetExhausted(f"the token budget max_tokens_total={budget} is spent")
                try:  # the raw reply: read and checked here, never trusted to fit the protocol
                    reply = await self.client.chat.completions.with_raw_response.create(
                        model=self.provider.model, messages=messages, temperature=self.config.temperature)
                except APIError as err:
                    said = str(err)
                    said = said if len(said) <= SERVER_TEXT_SHOWN else said[:SERVER_TEXT_SHOWN] + "…"
                    raise self._failure(f"{self.provider.where} did not answer ({type(err).__name__}: {said})") \
                        from None
                try:
                    content, prompt_tokens, completion_tokens = read_reply(reply.content)
                except LabelingError as err:
                    usage.add(1, 0, 0)
                    self.usage.add(1, 0, 0)
                    raise self._failure(f"{self.provider.where} sent a malformed reply: {err}") from None
                usage.add(1, prompt_tokens, completion_tokens)
                self.usage.add(1, prompt_tokens, completion_tokens)
                try:
                    return parse(content)
                except ReplyError as err:
                    if attempt:
                        raise self._failure(f"{self.provider.model} twice replied with something other than the "
                                            f"JSON asked for ({err})") from None
                    messages = messages + [{"role": "assistant", "content": content or ""},
                                           {"role": "user", "content": repair_message(err)}]

    async def label(self, feature: int, examples: ExampleSets, previous: str | None = None) -> FeatureLabel:
        """A label for ``feature`` written from ``examples``' label sets."""
        if not examples.label_positives:
            raise LabelingError(f"feature {feature} never fires in the dataset: there is nothing to label")
        usage = Usage()
        reply: LabelReply = await self._ask(
            labelling_prompt(examples.label_positives, examples.label_negatives, previous), parse_label, usage)
        scrub = self.provider.api_key.scrub
        result = FeatureLabel(feature=feature, label=scrub(reply.label),
                              brief_description=scrub(reply.brief_description),
                              detailed_explanation=scrub(reply.detailed_explanation), model=self.config.model,
                              prompt_version=PROMPT_VERSION, seed=self.config.seed, examples=examples.rows(),
                              usage=usage)
        result.record()  # a label a store cannot keep fails here, before its scoring is paid for
        return result

    async def score(self, feature: int, label: str, description: str, examples: ExampleSets) -> LabelScore:
        """Detection and fuzzing of ``label`` on ``examples``' held-out sets (never the ones it was written from)."""
        positives, negatives = examples.score_positives, examples.score_negatives
        if not positives or not negatives:
            raise LabelingError(f"feature {feature} has no held-out {'positive' if not positives else 'negative'} "
                                "example to score its label on")
        rng = np.random.default_rng([self.config.seed, feature, 1])
        detection = [(e, e.plain, int(e.kind == "positive")) for e in positives + negatives]
        fuzzing = [(e, text, truth) for e in positives for text, truth in ((e.marked, 1), (e.misplaced, 0)) if text]
        usage = Usage()
        tasks = []
        for test, items, prompt in (("detection", detection, detection_prompt), ("fuzzing", fuzzing, fuzzing_prompt)):
            items = [items[i] for i in rng.permutation(len(items))]  # positives and negatives mixed in each request
            for start in range(0, len(items), self.config.batch_size):
                batch = items[start:start + self.config.batch_size]
                tasks.append((test, batch, self._ask(prompt(label, description, [text for _, text, _ in batch]),
                                                     lambda content, n=len(batch): parse_verdicts(content, n), usage)))
        answers = await asyncio.gather(*(task for _, _, task in tasks))
        rows = [{"test": test, "row": e.row, "kind": e.kind, "truth": truth, "verdict": verdict}
                for (test, batch, _), verdicts in zip(tasks, answers) for (e, _, truth), verdict in zip(batch, verdicts)]
        return _score(pd.DataFrame(rows, columns=["test", "row", "kind", "truth", "verdict"]), usage)


def _balanced_accuracy(truth: np.ndarray, verdict: np.ndarray) -> float:
    if not (truth == 1).any() or not (truth == 0).any():
        return float("nan")
    return float(((verdict[truth == 1] == 1).mean() + (verdict[truth == 0] == 0).mean()) / 2)


def _score(verdicts: pd.DataFrame, usage: Usage) -> LabelScore:
    detection = verdicts[verdicts.test == "detection"]
    truth, verdict = detection.truth.to_numpy(), detection.verdict.to_numpy()
    tp, fp = int(((truth == 1) & (verdict == 1)).sum()), int(((truth == 0) & (verdict == 1)).sum())
    tn, fn = int(((truth == 0) & (verdict == 0)).sum()), int(((truth == 1) & (verdict == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    fuzzing = verdicts[verdicts.test == "fuzzing"]
    return LabelScore(balanced_accuracy=_balanced_accuracy(truth, verdict), precision=precision, recall=recall, f1=f1,
                      true_positives=tp, false_positives=fp, true_negatives=tn, false_negatives=fn,
                      fuzzing=_balanced_accuracy(fuzzing.truth.to_numpy(), fuzzing.verdict.to_numpy()),
                      verdicts=verdicts.reset_index(drop=True), usage=usage)


def run_sync(awaitable):
    """Run a coroutine to its end from synchronous code, also inside a running event loop (Jupyter): there it
    runs on a loop of its own in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(awaitable)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, awaitable).result()
