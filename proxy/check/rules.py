"""The conformance rules, one row each: a name, what it checks, and a function that
returns (passed, detail). Stream rules look at every streamed run; the rest look at
the non-streamed answer beside the first run."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from proxy.check.probe import Response
from proxy.params import is_int
from proxy.check.stream import Streamed, choices_of, json_answer, streamed_answer

Verdict = tuple[bool, str]
FINISH_REASONS = {"stop", "length", "tool_calls", "content_filter", "function_call"}
USAGE_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")


@dataclass(frozen=True)
class Evidence:
    streams: list[Streamed]
    answer: Response  # the same request, not streamed
    exact: bool  # the model is deterministic: compare text, not only shape


@dataclass(frozen=True)
class Rule:
    name: str
    checks: str
    verdict: Callable[[Evidence], Verdict]


def media_type(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def content_type(s: Streamed) -> Verdict:
    value = s.response.content_type
    return media_type(value) == "text/event-stream", value or "(none)"


def data_framing(s: Streamed) -> Verdict:
    for number, frame in enumerate(s.frames):
        # comments (`:`) are ignored by clients; an `event:` line makes OpenAI's SDKs
        # treat the chunk as something else
        stray = [line for line in frame.block.splitlines()
                 if line and not line.startswith((b"data:", b":"))]
        if stray:
            return False, f"event {number}: line {stray[0][:40]!r} is not a data: line"
        if not (frame.done or isinstance(frame.obj, dict)):
            return False, f"event {number}: data is not a JSON object: {frame.data[:40]!r}"
    if s.leftover.strip():
        return False, f"the stream ends inside an event: {s.leftover[:40]!r}"
    return bool(s.frames), f"{len(s.frames)} events, each data: and JSON or [DONE]"


def first_chunk_role(s: Streamed) -> Verdict:
    choices = choices_of(s.chunks[0]) if s.chunks else []
    delta = choices[0].get("delta") if choices else None
    role = delta.get("role") if isinstance(delta, dict) else None
    return role == "assistant", f"role {role!r}"


def stable(field: str, kind: type) -> Callable[[Streamed], Verdict]:
    def verdict(s: Streamed) -> Verdict:
        values = [chunk.get(field) for chunk in s.chunks]
        distinct = list(dict.fromkeys(map(repr, values)))
        if not values or not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
            return False, f"not every chunk has a {kind.__name__} {field}: {distinct[:3]}"
        if len(distinct) > 1:
            return False, f"{len(distinct)} different values: {', '.join(distinct[:3])}"
        return True, f"{distinct[0]} in all {len(values)} chunks"
    return verdict


def object_field(s: Streamed) -> Verdict:
    for number, chunk in enumerate(s.chunks):
        if chunk.get("object") != "chat.completion.chunk":
            return False, f"chunk {number}: object {chunk.get('object')!r}"
    return bool(s.chunks), "chat.completion.chunk"


def chunk_shape(s: Streamed) -> Verdict:
    for number, chunk in enumerate(s.chunks):
        choices = chunk.get("choices")
        if not isinstance(choices, list) or len(choices_of(chunk)) != len(choices):
            return False, f"chunk {number}: choices is not a list of objects"
        for choice in choices:
            if not (is_int(choice.get("index")) and isinstance(choice.get("delta"), dict)):
                return False, f"chunk {number}: a choice without an integer index and a delta"
    return True, "choices: [{index, delta, ...}]"


def finish_reason(s: Streamed) -> Verdict:
    by_choice: dict[int, list] = {}
    for chunk in s.chunks:
        for choice in choices_of(chunk):
            by_choice.setdefault(repr(choice.get("index")), []).append(choice.get("finish_reason"))
    if not by_choice:
        return False, "no choice chunks"
    for index, reasons in by_choice.items():
        given = [r for r in reasons if r is not None]
        if len(given) != 1 or reasons[-1] is None:
            return False, f"choice {index}: finish reasons {given}; one, in its last chunk"
        if given[0] not in FINISH_REASONS:
            return False, f"choice {index}: {given[0]!r} is not one of OpenAI's finish reasons"
    return True, ", ".join(sorted({str(r[-1]) for r in by_choice.values()}))


def usage_chunk(s: Streamed) -> Verdict:
    """With stream_options.include_usage: one last chunk with `choices: []` and the
    usage; every other chunk's usage is null or absent."""
    carrying = [n for n, chunk in enumerate(s.chunks) if chunk.get("usage") is not None]
    if len(carrying) != 1 or carrying[0] != len(s.chunks) - 1:
        return False, f"usage in chunks {carrying} of {len(s.chunks)}; one, the last, is expected"
    last = s.chunks[-1]
    if last.get("choices") != []:
        return False, "the usage chunk's choices is not []"
    usage = last["usage"]
    counts = [usage.get(name) if isinstance(usage, dict) else None for name in USAGE_COUNTS]
    if not all(map(is_int, counts)) or counts[0] + counts[1] != counts[2]:
        return False, f"usage {dict(zip(USAGE_COUNTS, counts))}: integers that add up expected"
    return True, "{} + {} = {} tokens".format(*counts)


def done_marker(s: Streamed) -> Verdict:
    done = [n for n, frame in enumerate(s.frames) if frame.done]
    if not done:
        return False, "no data: [DONE]"
    if done != [len(s.frames) - 1]:
        return False, f"[DONE] at events {done} of {len(s.frames)}; once, last, is expected"
    return True, "data: [DONE] last"


def no_error_event(s: Streamed) -> Verdict:
    if not s.errors:
        return True, "none"
    error = s.errors[0]["error"]
    message = error.get("message") if isinstance(error, dict) else error
    return False, f"error event: {message}"


def json_answer_shape(evidence: Evidence) -> Verdict:
    answer = evidence.answer
    body = answer.json()
    if answer.status != 200 or media_type(answer.content_type) != "application/json":
        return False, f"HTTP {answer.status}, {answer.content_type or 'no content type'}"
    if not isinstance(body, dict) or body.get("object") != "chat.completion":
        return False, f"object {body.get('object') if isinstance(body, dict) else body!r}"
    choices = choices_of(body)
    message = choices[0].get("message") if choices else None
    if not isinstance(message, dict) or message.get("role") != "assistant":
        return False, "choices[0].message is not an assistant message"
    if not isinstance(body.get("usage"), dict):
        return False, "no usage"
    return True, "chat.completion with an assistant message and usage"


def json_matches_stream(evidence: Evidence) -> Verdict:
    """The same request answered whole: the same finish reason, text and tool calls
    (with --exact, for a deterministic model), else the same shape: finish reason,
    text or not, the same tool names."""
    body = evidence.answer.json() if evidence.answer.status == 200 else None
    choices = choices_of(body) if isinstance(body, dict) else []
    if not choices or not isinstance(choices[0].get("message"), dict):
        return False, "no non-streamed message to compare"
    whole = json_answer(body)
    streamed = streamed_answer(evidence.streams[0].chunks)
    differences = [name for name, same in _comparison(whole, streamed, evidence.exact) if not same]
    if differences:
        return False, "differs in " + ", ".join(differences)
    calls = f"{len(whole.tool_calls)} tool call(s)"
    if evidence.exact or whole.text == streamed.text:
        return True, f"same text, {calls} and finish {whole.finish!r}"
    return True, f"same shape ({calls}, finish {whole.finish!r}); text differs, --exact compares it"


def _comparison(whole, streamed, exact: bool) -> list[tuple[str, bool]]:
    if exact:
        return [("finish_reason", whole.finish == streamed.finish),
                ("text", whole.text == streamed.text),
                ("tool calls", whole.tool_calls == streamed.tool_calls)]
    return [("finish_reason", whole.finish == streamed.finish),
            ("text present", bool(whole.text) == bool(streamed.text)),
            ("tool names", [c[0] for c in whole.tool_calls] == [c[0] for c in streamed.tool_calls])]


def judge(rule: Rule, evidence: Evidence) -> Verdict:
    """A rule's verdict; an answer too broken for the rule to read fails it, never
    the checker."""
    try:
        return rule.verdict(evidence)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        return False, f"unreadable answer ({type(exc).__name__})"


def every_run(rule: Callable[[Streamed], Verdict]) -> Callable[[Evidence], Verdict]:
    """A stream rule passes when it passes on every run; the first failure is told."""
    def verdict(evidence: Evidence) -> Verdict:
        results = [rule(s) for s in evidence.streams]
        failed = [(n, detail) for n, (passed, detail) in enumerate(results, 1) if not passed]
        if not failed:
            return results[0]
        run, detail = failed[0]
        return False, f"run {run}: {detail}" if len(results) > 1 else detail
    return verdict


# (name, what it checks, the check of one streamed run)
STREAM_RULES = (
    ("content_type", "the stream's Content-Type is text/event-stream", content_type),
    ("data_framing", "every event is data: lines holding a JSON object or [DONE], ended by "
     "a blank line", data_framing),
    ("first_chunk_role", "the first chunk's delta has role assistant", first_chunk_role),
    ("stable_id", "every chunk has the same string id", stable("id", str)),
    ("stable_created", "every chunk has the same integer created", stable("created", int)),
    ("stable_model", "every chunk has the same string model", stable("model", str)),
    ("object_field", "every chunk's object is chat.completion.chunk", object_field),
    ("chunk_shape", "every chunk's choices have an integer index and a delta", chunk_shape),
    ("finish_reason", "each choice has one finish_reason, in its last chunk, from OpenAI's set",
     finish_reason),
    ("usage_chunk", "include_usage: one last chunk with choices [] and integer usage that adds "
     "up; usage null or absent elsewhere", usage_chunk),
    ("done_marker", "the stream ends with data: [DONE], once", done_marker),
    ("no_error_event", "no event carries an error", no_error_event),
)

RULES = (
    *(Rule(name, checks, every_run(check)) for name, checks, check in STREAM_RULES),
    Rule("json_answer", "the non-streamed answer is 200 application/json chat.completion "
         "with an assistant message and usage", json_answer_shape),
    Rule("json_matches_stream", "the non-streamed answer matches the streamed one (finish "
         "reason, text and tool calls with --exact, else their shape)", json_matches_stream),
)
