"""python -m proxy.check URL [--model M] [--key K] [--json] [--runs N] [--timeout S] [--exact]

Exit 0 when every conformance rule passes, 1 when any fails, 2 when nothing could be
checked (usage, connection, an error answer). Timings never fail the run."""
from __future__ import annotations

import argparse
import os
import sys

from proxy.check import probe, report, stream
from proxy.check.probe import CheckError, Target
from proxy.check.rules import RULES, Evidence, judge

# a variable of its own, not OPENAI_API_KEY: the checker points at any URL, and an
# OpenAI key must not go to one by accident
KEY_ENV = "CHECK_API_KEY"
PROMPT = "Say hello to a caller in one short sentence."


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m proxy.check",
        description="Check an OpenAI-compatible chat endpoint's streaming conformance "
                    "and timings.")
    parser.add_argument("url", help="the chat-completions URL (.../v1/chat/completions) "
                        "or its base (.../v1)")
    parser.add_argument("--model", help="model to ask (default: the first one that "
                        "GET {base}/models lists)")
    parser.add_argument("--key", help=f"API key sent as a bearer token (default: ${KEY_ENV})")
    parser.add_argument("--prompt", default=PROMPT, help="the user message")
    parser.add_argument("--runs", type=positive(int), default=1,
                        help="streamed calls to check and time (default 1)")
    parser.add_argument("--timeout", type=positive(float), default=60.0,
                        help="seconds allowed for each call, start to end (default 60)")
    parser.add_argument("--exact", action="store_true",
                        help="the model is deterministic: the non-streamed text and tool "
                        "calls must equal the streamed ones")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser.parse_args(argv)


def positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not above 0")
        return value
    return parse


def request(model: str, prompt: str, streamed: bool) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    return {**body, "stream": True, "stream_options": {"include_usage": True}} if streamed else body


def streamed_call(target: Target, body: dict, args, key: str | None) -> stream.Streamed:
    """One streamed call; an HTTP error answer leaves nothing to check (exit 2)."""
    answer = probe.call(target, probe.CHAT_PATH, body, key, args.timeout)
    if answer.status != 200:
        raise CheckError(f"{target.url(probe.CHAT_PATH)} answered HTTP {answer.status}: "
                         f"{probe.error_message(answer)}")
    return stream.parse(answer)


def check(args, key: str | None) -> tuple[dict, list[report.Row], dict]:
    target = Target.parse(args.url)
    model = args.model or probe.first_model(target, key, args.timeout)
    if not model:
        raise CheckError(f"no --model given and {target.url('/models')} lists none")
    streams = [streamed_call(target, request(model, args.prompt, True), args, key)
               for _ in range(args.runs)]
    whole = probe.call(target, probe.CHAT_PATH, request(model, args.prompt, False), key,
                       args.timeout)
    evidence = Evidence(streams, whole, args.exact)
    rows = [report.Row(rule.name, rule.checks, *judge(rule, evidence)) for rule in RULES]
    head = {"url": target.url(probe.CHAT_PATH), "model": model, "runs": args.runs,
            "compare": "exact" if args.exact else "shape"}
    return head, rows, report.summarize([stream.timings(s) for s in streams])


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    key = args.key or os.environ.get(KEY_ENV) or None
    try:
        head, rows, timings = check(args, key)
    except CheckError as exc:
        print(f"check: {report.printable(str(exc), key)}", file=sys.stderr)
        return 2
    render = report.as_json if args.json else report.as_table
    print(render(head, rows, timings, key))
    return 0 if all(row.passed for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
