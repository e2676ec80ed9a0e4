"""GET /v1/usage?from=&to=&group_by=: requests, errors, tokens, cost, latency and
time-to-first-token percentiles (nearest-rank, over successful requests) and
feedback, per group and in total, for completions created in [from, to).
`group_by` day, hour or minute is a time series (UTC buckets, in order)."""
from __future__ import annotations

import time
from contextlib import closing
from datetime import datetime, timezone

from flask import Blueprint, current_app, g, jsonify, request

from proxy import params
from proxy.errors import InvalidRequest
from proxy.log import queries
from proxy.policy.access import owner

bp = Blueprint("usage", __name__)

DEFAULT_DAYS = 30


@bp.get("/usage")
def usage():
    group_by = request.args.get("group_by") or "day"
    if group_by not in queries.GROUPS:
        raise InvalidRequest(f"`group_by` must be one of {', '.join(queries.GROUPS)}.",
                             param="group_by", code="invalid_value")
    end = _time_arg("to", end=True)
    end = time.time() if end is None else end
    start = _time_arg("from", end=False)
    start = end - DEFAULT_DAYS * 86400 if start is None else start
    if start >= end:
        raise InvalidRequest("`from` must be before `to`.", param="from", code="invalid_value")
    with closing(current_app.extensions["switchboard"].recorder.connection()) as conn:
        data, totals = queries.usage_report(conn, group_by, start, end, owner(g.get("principal")))
    data.sort(key=_order(group_by))
    return jsonify({"object": "usage", "from": _iso(start), "to": _iso(end), "group_by": group_by,
                    "percentiles": "nearest-rank", "data": data, "totals": totals})


def _time_arg(name: str, *, end: bool) -> float | None:
    text = request.args.get(name)
    if not text:
        return None
    try:
        return params.parse_time(text, end=end)
    except ValueError:
        raise params.bad_time(name) from None


def _iso(ts: float) -> str:
    moment = datetime.fromtimestamp(ts, timezone.utc)
    return moment.isoformat(timespec="milliseconds" if ts % 1 else "seconds").replace("+00:00", "Z")


def _order(group_by: str):
    """Time buckets in order; other groups busiest first."""
    if group_by in queries.TIME_GROUPS:
        return lambda item: item["group"] or ""
    return lambda item: (-item["requests"], item["group"] is None, str(item["group"]))
