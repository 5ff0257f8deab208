"""The prompts that write and score a label, and the checks on the replies.

Bump :data:`PROMPT_VERSION` whenever a prompt changes: every stored label records it, and labelling again
with the same model, prompt version and seed finds its earlier answer instead of paying again.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .examples import Example

PROMPT_VERSION = "1"

SYSTEM = ("You explain the features of a sparse autoencoder trained on a language model's hidden states. "
          "Each feature fires on some tokens of some texts. Answer with one JSON object and nothing else.")


class ReplyError(ValueError):
    """A reply that is not the JSON asked for."""


@dataclass(frozen=True)
class LabelReply:
    label: str
    brief_description: str
    detailed_explanation: str


def _numbered(texts: list[str]) -> str:
    return "\n".join(f"{i}. {text}" for i, text in enumerate(texts, 1)) or "(none)"


def labelling_prompt(positives: list[Example], negatives: list[Example], previous: str | None = None) -> str:
    """Ask for a label from marked positives and unmarked negatives; ``previous`` (a label and its score) asks
    for a better one."""
    peak = max((e.activation for e in positives), default=1.0) or 1.0
    active = [f"[strength {e.activation / peak:.2f}] {e.marked}" for e in positives]
    refine = (f"\nAn earlier label for this feature was {previous}. Write a better one if these excerpts "
              "show it was wrong or too broad.\n" if previous else "")
    return f"""Below are excerpts of texts where one feature is ACTIVE and excerpts where it is SILENT.
In ACTIVE excerpts the tokens where it fires are between << and >>, and the strength (1.00 = the strongest
shown) says how much. Several SILENT excerpts were picked because they resemble the ACTIVE ones in other
ways, so what matters is what differs between the two groups.

ACTIVE
{_numbered(active)}

SILENT
{_numbered([e.plain for e in negatives])}
{refine}
Name the property of the text that makes the feature fire: present at, or just before, the marked tokens in
the ACTIVE excerpts and absent from the SILENT ones. Prefer one specific concept to a list of several.

Reply with this JSON object:
{{"label": "<at most 8 words>", "brief_description": "<one sentence>", "detailed_explanation": "<at most 4 sentences>"}}"""


def detection_prompt(label: str, description: str, excerpts: list[str]) -> str:
    """Ask, for each unmarked excerpt, whether the labelled property is present."""
    return f"""A feature is described as: "{label}". {description}

For each numbered excerpt below, answer 1 if the described property is present in it, 0 if it is not.

{_numbered(excerpts)}

Reply with this JSON object, one answer per excerpt, in order:
{{"verdicts": [{", ".join(["0 or 1"] * min(len(excerpts), 3))}{", ..." if len(excerpts) > 3 else ""}]}}"""


def fuzzing_prompt(label: str, description: str, excerpts: list[str]) -> str:
    """Ask, for each marked excerpt, whether the marks sit on tokens the label describes."""
    return f"""A feature is described as: "{label}". {description}

In each numbered excerpt below, some tokens are between << and >>. Answer 1 if the marked tokens are where the
described property is, 0 if the marks are on tokens the description does not fit.

{_numbered(excerpts)}

Reply with this JSON object, one answer per excerpt, in order:
{{"verdicts": [{", ".join(["0 or 1"] * min(len(excerpts), 3))}{", ..." if len(excerpts) > 3 else ""}]}}"""


def repair_message(error: ReplyError) -> str:
    return f"Your reply could not be used: {error}. Reply again with only the JSON object asked for."


def _json_object(content: str | None) -> dict:
    """The JSON object in a reply, also when wrapped in a Markdown code fence or a sentence."""
    if not content:
        raise ReplyError("the reply was empty")
    text = re.sub(r"^```(?:json)?\s*|\s*```$", "", content.strip())
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ReplyError("the reply holds no JSON object")
    try:
        body = json.loads(text[start:end + 1])
    except (json.JSONDecodeError, RecursionError) as err:
        raise ReplyError(f"the JSON object does not parse ({err})") from None
    if not isinstance(body, dict):
        raise ReplyError("the reply's JSON is not an object")
    return body


def parse_label(content: str | None) -> LabelReply:
    body = _json_object(content)
    fields = {}
    for name in ("label", "brief_description", "detailed_explanation"):
        value = body.get(name, "" if name == "detailed_explanation" else None)
        if not isinstance(value, str) or (name == "label" and not value.strip()):
            raise ReplyError(f"'{name}' must be a non-empty string")
        fields[name] = " ".join(value.split())
    return LabelReply(**fields)


def parse_verdicts(content: str | None, n: int) -> list[int]:
    verdicts = _json_object(content).get("verdicts")
    if not isinstance(verdicts, list) or len(verdicts) != n:
        raise ReplyError(f"'verdicts' must be a list of {n} answers, one per excerpt")
    out = []
    for v in verdicts:
        if v in (0, 1) and not isinstance(v, float) or v in ("0", "1"):
            out.append(int(v))
        else:
            raise ReplyError(f"each verdict must be 0 or 1, got {v!r}")
    return out
