"""/v1/keys: virtual key management, for the master key only."""
from __future__ import annotations

from contextlib import closing

from flask import Blueprint, current_app, g, jsonify, request

from proxy.completion import parse_object
from proxy.errors import PermissionDenied
from proxy.policy import key_admin

bp = Blueprint("keys", __name__)


def _admin():
    gateway = current_app.extensions["switchboard"]
    if not gateway.keys.enabled:
        raise PermissionDenied("Key management needs GATEWAY_MASTER_KEY to be set.")
    if not g.principal.is_master:
        raise PermissionDenied("Only the master key can manage keys.")
    return gateway, closing(gateway.recorder.connection())


@bp.post("/keys")
def create_key():
    _, connection = _admin()
    with connection as conn:
        return jsonify(key_admin.create(conn, parse_object(request.get_data()))), 201


@bp.get("/keys")
def list_keys():
    _, connection = _admin()
    with connection as conn:
        return jsonify({"object": "list", "data": key_admin.list_keys(conn)})


@bp.get("/keys/<key_id>")
def get_key(key_id: str):
    gateway, connection = _admin()
    with connection as conn:
        key = key_admin.get(conn, key_id)
    key["spend_this_month_usd"] = gateway.budgets.spend(key_id, fresh=True)
    return jsonify(key)


@bp.patch("/keys/<key_id>")
def update_key(key_id: str):
    _, connection = _admin()
    with connection as conn:
        return jsonify(key_admin.update(conn, key_id, parse_object(request.get_data())))


@bp.delete("/keys/<key_id>")
def revoke_key(key_id: str):
    _, connection = _admin()
    with connection as conn:
        return jsonify(key_admin.revoke(conn, key_id))
