"""The gunicorn worker: gevent's own WSGI server (pywsgi) in gunicorn's gevent
worker. Its parsing and writing cost ~15-20% less CPU per request than
gunicorn's HTTP layer, and it sends a response's head and first bytes in one
write (bench/). gunicorn.conf.py names it as the worker class."""
from __future__ import annotations

from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler


class DrainingHandler(PyWSGIHandler):
    """Once the worker stops accepting (SIGTERM, a graceful restart), the next answer
    on each keep-alive connection says `Connection: close` and is the connection's
    last: clients reconnect to a live worker and what is in flight finishes. Alone,
    pywsgi would go on serving them until the graceful timeout kills its handlers."""

    def start_response(self, status, headers, exc_info=None):
        if self.server.closed:
            headers = [*headers, ("Connection", "close")]
        return super().start_response(status, headers, exc_info)

    def log_request(self):
        # the app writes one access line per request itself (proxy/access_log.py);
        # gunicorn's own line costs ~3% of a request, so only when one is asked for
        if self.server.log.cfg.accesslog:
            super().log_request()


class Worker(GeventPyWSGIWorker):
    wsgi_handler = DrainingHandler
