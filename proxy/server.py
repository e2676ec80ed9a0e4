"""The gunicorn worker: gevent's own WSGI server (pywsgi) in gunicorn's gevent
worker. Its parsing and writing cost ~15-20% less CPU per request than
gunicorn's HTTP layer, and it sends a response's head and first bytes in one
write (bench/). gunicorn.conf.py names it as the worker class."""
from __future__ import annotations

import re
import sys

from gevent.pywsgi import OldMessage
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

from proxy.sse import DONE

SWITCH_INTERVAL_S = 0.0005
MAX_LINE, MAX_HEADERS = 65536, 100  # http.client's limits, which pywsgi applies
_FIELD_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
_END = (b"\r\n", b"\n", b"")


def read_headers(fp) -> OldMessage:
    """The request's header fields, as pywsgi's message object, read line by line.
    pywsgi hands them to the email package's parser, ~7% of a small request. A
    malformed field (no colon, a space before it, an obsolete folded line) sets
    `status`, which pywsgi answers with 400."""
    message = OldMessage()
    for _ in range(MAX_HEADERS + 1):
        line = fp.readline(MAX_LINE + 1)
        if line in _END:
            return message
        if len(line) > MAX_LINE:
            message.status = "Line too long"
            return message
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon or not _FIELD_NAME.fullmatch(name):
            message.status = "Malformed header field"
            return message
        message[name] = value.strip(" \t\r\n")
    message.status = f"More than {MAX_HEADERS} header fields"
    return message


class Handler(PyWSGIHandler):
    """Request headers read by `read_headers`; an idle connection closed after
    gunicorn's `keepalive` seconds; a stream's end sent with its last chunk.

    Once the worker stops accepting (SIGTERM, a graceful restart), the next answer
    on each keep-alive connection says `Connection: close` and is the connection's
    last: clients reconnect to a live worker and what is in flight finishes. Alone,
    pywsgi would go on serving them until the graceful timeout kills its handlers."""

    # the app writes one access line per request itself (proxy/access_log.py);
    # gunicorn's own costs ~3% of a request: only when its access log is configured
    gunicorn_access_log = False
    idle_timeout_s: float | None = None  # gunicorn's `keepalive`, set by the Worker

    def MessageClass(self, fp, *_):  # noqa: N802 - pywsgi's name
        return read_headers(fp)

    def process_result(self):
        """pywsgi's, except that a stream's `data: [DONE]` (after which nothing may
        come) goes out in one write with the body's last chunk, instead of that
        empty chunk taking a system call of its own."""
        ended = False
        for data in self.result:
            if not data or ended:
                continue  # the iterator still runs to its end: the stream finishes normally
            if self.headers_sent and self.response_use_chunked and data.endswith(DONE):
                self._sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
                ended = True
            else:
                self.write(data)
        if self.status and not self.headers_sent:
            self.write(b"")  # an empty body: the head still goes out
        if self.response_use_chunked and not ended:
            self._sendall(b"0\r\n\r\n")

    def start_response(self, status, headers, exc_info=None):
        if self.server.closed:
            headers = [*headers, ("Connection", "close")]
        return super().start_response(status, headers, exc_info)

    def handle(self):
        # pywsgi waits for a client's next request (or the rest of a body) forever;
        # like gunicorn's keepalive, a connection silent that long is closed
        self.socket.settimeout(self.idle_timeout_s)
        super().handle()

    def log_request(self):
        if self.gunicorn_access_log:
            super().log_request()


class Worker(GeventPyWSGIWorker):
    wsgi_handler = Handler

    def run(self):
        Handler.gunicorn_access_log = bool(self.cfg.accesslog)
        Handler.idle_timeout_s = self.cfg.keepalive or None
        # The log writer is an OS thread running Python: while it holds the GIL a
        # request that has just arrived waits, by default up to 5 ms before the
        # interpreter makes the writer let go. 0.5 ms bounds that wait.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        super().run()
