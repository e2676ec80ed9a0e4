"""gunicorn settings, all overridable from the environment."""
import multiprocessing
import os

from dotenv import load_dotenv

load_dotenv()

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count())
worker_class = "proxy.server.Worker"  # gunicorn's gevent worker, serving with gevent's pywsgi
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", 1000))
# gevent workers heartbeat from their own greenlet, so `timeout` only kills a
# worker whose loop is blocked: it never cuts a long stream.
timeout = int(os.environ.get("WORKER_TIMEOUT", 120))
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", 30))
keepalive = int(os.environ.get("KEEPALIVE", 75))  # silence allowed while reading a request
# The worker's own limits at the edge (proxy/server.py Limits), not gunicorn settings:
# handed to each worker by post_fork below. 0 means none.
edge = {
    "head_s": float(os.environ.get("REQUEST_HEAD_TIMEOUT", 10)) or None,
    "body_s": float(os.environ.get("REQUEST_BODY_TIMEOUT", 60)) or None,
    "write_s": float(os.environ.get("WRITE_TIMEOUT", 600)) or None,
    # open connections per worker, idle ones and those still sending a head included;
    # WORKER_CONNECTIONS bounds the requests being served
    "open_connections": int(os.environ.get("WORKER_OPEN_CONNECTIONS", 10 * worker_connections)),
}
accesslog = None  # the app writes one structured line per request itself
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# gunicorn 27's control socket lives at one fixed path per user, so several
# gateways on one machine (tests, side-by-side benches) would fight over it.
control_socket_disable = True


def post_fork(server, worker):
    worker.edge = edge


def worker_exit(server, worker):
    """Flush the sidecar log before the worker goes (SIGTERM included)."""
    gateway = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("switchboard")
    if gateway is not None:
        gateway.close()


def on_starting(server):
    """One Prometheus multiprocess directory per gateway, emptied at start."""
    import tempfile
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = tempfile.mkdtemp(prefix="switchboard-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))


def child_exit(server, worker):
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)


def _refuse_open_exposure():
    """Without a master key the gateway is open: only on loopback, unless told otherwise."""
    import ipaddress
    host = bind.rsplit(":", 1)[0].strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not os.environ.get("GATEWAY_MASTER_KEY") \
            and os.environ.get("GATEWAY_ALLOW_OPEN") != "1":
        raise SystemExit(f"Refusing to serve on {bind} without GATEWAY_MASTER_KEY: anyone who can "
                         "reach it could spend your provider credits. Set GATEWAY_MASTER_KEY, or "
                         "GATEWAY_ALLOW_OPEN=1 to run open on purpose.")


_refuse_open_exposure()
