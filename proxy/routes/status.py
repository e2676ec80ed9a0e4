"""GET /v1/status (master key only when keys are on): what the gateway is doing
now, for the dashboard: chat calls in flight and rows waiting for the log writer.

Each gunicorn worker has its own count and its own queue. Every worker publishes
both, every 0.25 s, to the Prometheus multiprocess gauges (`livesum`: a worker's
file goes when the worker does), so the gateway's totals are those files added
up, at most a quarter of a second old; `workers` says how many were added.
Without the multiprocess directory (one process, as in a test app) the numbers
are this process's own."""
from __future__ import annotations

import glob
import os

from flask import Blueprint, current_app, g, jsonify
from prometheus_client.multiprocess import MultiProcessCollector

from proxy import metrics
from proxy.errors import PermissionDenied

bp = Blueprint("status", __name__)

_GAUGES = {"in_flight": metrics.IN_FLIGHT, "log_queue_depth": metrics.QUEUE_DEPTH}


@bp.get("/status")
def status():
    gateway = current_app.extensions["switchboard"]
    if gateway.keys.enabled and not g.principal.is_master:
        raise PermissionDenied("Only the master key can read /v1/status.")
    gateway.metrics.tick()  # this worker's numbers as of now
    return jsonify({"object": "status", "keys_enabled": gateway.keys.enabled, **_live(gateway)})


def _live(gateway) -> dict:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    files = glob.glob(os.path.join(directory, "gauge_livesum_*.db")) if directory else []
    if not files:
        return {"in_flight": metrics.InFlight.count,
                "log_queue_depth": gateway.recorder.writer.depth(), "workers": 1}
    sums = {family.name: sum(sample.value for sample in family.samples)
            for family in MultiProcessCollector.merge(files, accumulate=False)}
    return {**{field: int(sums.get(_name(gauge), 0)) for field, gauge in _GAUGES.items()},
            "workers": len(files)}


def _name(gauge) -> str:
    return gauge.describe()[0].name
