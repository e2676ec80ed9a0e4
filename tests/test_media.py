"""proxy.media: safe image fetching. Real HTTP goes to 127.0.0.1 only."""
from __future__ import annotations

import ipaddress
import itertools
import shutil
import ssl
import subprocess
import time

import pytest

from proxy import media
from proxy.errors import InvalidRequest
from tests.fakes.server import FakeServer, Reply, pause

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(17)
JPEG = b"\xff\xd8\xff\xe0" + bytes(20)


def only_localhost(ip) -> bool:
    """The test policy: exactly 127.0.0.1, nothing else."""
    return ip == ipaddress.ip_address("127.0.0.1")


def fetcher(**kw) -> media.MediaFetcher:
    kw.setdefault("allow", only_localhost)
    return media.MediaFetcher(**kw)


def refused(fetch, url: str) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        fetch(url)
    err = info.value
    assert err.status == 400 and err.param == "messages" and err.code == "invalid_image_url"
    return err


@pytest.fixture
def no_network(monkeypatch):
    """Any resolution or connection attempt fails the test."""
    def forbidden(*args, **kwargs):
        raise AssertionError("no connection or DNS lookup may be attempted")
    monkeypatch.setattr(media, "resolve", forbidden)
    monkeypatch.setattr(media, "HTTPConnection", forbidden)
    monkeypatch.setattr(media, "HTTPSConnection", forbidden)


# --- refusals with the default policy, before any connection -------------------------------

@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1:{port}/x.png", "127.0.0.1 is a loopback address"),
    ("http://localhost/x.png", "localhost is not a public host"),
    ("http://LOCALHOST./x.png", "localhost is not a public host"),
    ("http://img.localhost/x.png", "img.localhost is not a public host"),
    ("http://[::1]/x.png", "::1 is a loopback address"),
    ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a cloud metadata address"),
    ("http://metadata.google.internal/computeMetadata/v1/", "is not a public host"),
    ("http://10.0.0.1/", "10.0.0.1 is a private address"),
    ("http://172.16.0.1/", "172.16.0.1 is a private address"),
    ("http://192.168.1.1/", "192.168.1.1 is a private address"),
    ("http://[fd12:3456::1]/", "fd12:3456::1 is a private address"),
    ("http://[fe80::1]/", "fe80::1 is a link-local address"),
    ("http://169.254.1.1/", "169.254.1.1 is a link-local address"),
    ("http://100.64.0.1/", "100.64.0.1 is a carrier-grade NAT address"),
    ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
    ("http://240.0.0.1/", "240.0.0.1 is a reserved address"),
    ("http://0.0.0.0/", "0.0.0.0 is an unspecified address"),
    ("http://[::]/", ":: is an unspecified address"),
    ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1 is a loopback address"),
    ("http://[::ffff:10.0.0.5]/", "::ffff:10.0.0.5 is a private address"),
    ("http://[::ffff:169.254.169.254]/", "is a cloud metadata address"),
    ("http://2130706433/", "2130706433 is a loopback address"),
    ("http://0x7f000001/", "0x7f000001 is a loopback address"),
    ("http://127.1/", "127.1 is a loopback address"),
    ("http://0177.0.0.1/", "0177.0.0.1 is a loopback address"),
    ("file:///etc/passwd", "only http and https"),
    ("ftp://example.com/x.png", "only http and https"),
    ("gopher://example.com/", "only http and https"),
    ("data:image/png;base64,AAAA", "only http and https"),
    ("http:///x.png", "has no host"),
    ("http://exa mple.com/", "not valid"),
    ("http://example.com:99999/", "not a valid URL"),
    ("http://[fe80::1%25eth0]/", "is a link-local address"),
    ("http://[::127.0.0.1]/", "is a loopback address"),
    ("http://[2002:a00:1::]/", "is a private address"),
])
def test_refused_before_any_connection(no_network, url, why):
    err = refused(media.fetch_image, url.format(port=8080))
    assert err.message.startswith("Image URL refused: ")
    assert why in err.message


def test_a_host_resolving_to_a_private_address_is_refused(monkeypatch):
    asked = []

    def resolve(host, port):
        asked.append((host, port))
        return ["10.0.0.1"]

    monkeypatch.setattr(media, "resolve", resolve)
    monkeypatch.setattr(media, "HTTPConnection", None)  # connecting would fail loudly
    err = refused(media.fetch_image, "http://images.example/cat.png")
    assert err.message == "Image URL refused: images.example resolves to a private address"
    assert "10.0.0.1" not in err.message  # the internal address is not revealed
    assert asked == [("images.example", 80)]


def test_every_resolved_address_is_checked(monkeypatch):
    monkeypatch.setattr(media, "resolve", lambda host, port: ["93.184.215.14", "127.0.0.1"])
    monkeypatch.setattr(media, "HTTPConnection", None)
    err = refused(media.fetch_image, "http://rebind.example/cat.png")
    assert "resolves to a loopback address" in err.message


def test_unresolvable_host(monkeypatch):
    def resolve(host, port):
        raise OSError("Name or service not known")
    monkeypatch.setattr(media, "resolve", resolve)
    err = refused(media.fetch_image, "http://nowhere.example/cat.png")
    assert err.message == "could not fetch image: host nowhere.example could not be resolved"


def test_public_addresses_pass_the_default_policy():
    for ip in ("8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"):
        assert media.public_only(ipaddress.ip_address(ip)), ip
    for ip in ("192.0.0.192", "100.100.100.200", "fd00:ec2::254", "2002:a00:1::",
               "198.18.0.1", "255.255.255.255", "64:ff9b::a00:1", "ff02::1"):
        assert not media.public_only(ipaddress.ip_address(ip)), ip


def test_settings_from_env():
    f = media.MediaFetcher.from_env({"MEDIA_MAX_BYTES": "1000", "MEDIA_TIMEOUT": "2.5",
                                     "MEDIA_MAX_REDIRECTS": "1"})
    assert (f.max_bytes, f.timeout, f.max_redirects) == (1000, 2.5, 1)
    d = media.MediaFetcher.from_env({})
    assert (d.max_bytes, d.timeout, d.max_redirects) == (20 * 1024 * 1024, 10.0, 3)
    assert d.allow is media.public_only


# --- against a fake server on 127.0.0.1, with a policy allowing exactly 127.0.0.1 -----------

def test_fetches_a_png():
    with FakeServer(lambda req: Reply(200, {"Content-Type": "image/png"}, PNG)) as srv:
        assert fetcher().fetch_image(srv.url + "/x.png?size=small") == (PNG, "image/png")
        assert srv.last.path == "/x.png?size=small"
        assert srv.last.headers["host"] == f"127.0.0.1:{srv.port}"


def test_chunked_body_and_type_sniffed_when_not_declared():
    with FakeServer(lambda req: Reply(200, {"Content-Type": "application/octet-stream"},
                                 [JPEG[:5], JPEG[5:]])) as srv:
        assert fetcher().fetch_image(srv.url + "/x") == (JPEG, "image/jpeg")


def test_connects_to_the_checked_address_and_keeps_the_host_name(monkeypatch):
    resolved = []
    monkeypatch.setattr(media, "resolve", lambda host, port: resolved.append(host) or ["127.0.0.1"])
    with FakeServer(lambda req: Reply(200, {"Content-Type": "image/png"}, PNG)) as srv:
        # images.test exists in no DNS: this only works by connecting to the checked address
        assert fetcher().fetch_image(f"http://images.test:{srv.port}/a.png") == (PNG, "image/png")
        assert srv.last.headers["host"] == f"images.test:{srv.port}"
    assert resolved == ["images.test"]


def test_redirect_is_followed_and_rechecked():
    def handle(req):
        if req.path == "/start":
            return Reply(302, {"Location": "/final.png"})
        return Reply(200, {"Content-Type": "image/png"}, PNG)
    with FakeServer(handle) as srv:
        assert fetcher().fetch_image(srv.url + "/start") == (PNG, "image/png")
        assert [r.path for r in srv.requests] == ["/start", "/final.png"]


def test_redirect_to_an_address_the_policy_refuses():
    srv = FakeServer(lambda req: Reply(302, {"Location": f"http://127.0.0.2:{srv.port}/x.png"}))
    with srv:
        err = refused(fetcher().fetch_image, srv.url + "/start")
        assert err.message == "Image URL refused: 127.0.0.2 is a loopback address"
        assert len(srv.requests) == 1


@pytest.mark.parametrize("location", ["file:///etc/passwd", "http://169.254.169.254/latest/"])
def test_redirect_to_a_refused_scheme_or_metadata(location):
    with FakeServer(lambda req: Reply(301, {"Location": location})) as srv:
        err = refused(fetcher().fetch_image, srv.url + "/start")
        assert err.message.startswith("Image URL refused: ")
        assert len(srv.requests) == 1


def test_redirect_loop_beyond_the_hop_limit():
    with FakeServer(lambda req: Reply(307, {"Location": "/again"})) as srv:
        err = refused(fetcher(max_redirects=3).fetch_image, srv.url + "/loop")
        assert err.message == "Image URL refused: more than 3 redirects"
        assert len(srv.requests) == 4


def test_oversize_with_content_length():
    body = PNG + bytes(5000)
    with FakeServer(lambda req: Reply(200, {"Content-Type": "image/png"}, body)) as srv:
        err = refused(fetcher(max_bytes=1000).fetch_image, srv.url + "/big.png")
        assert err.message == "Image URL refused: the image is larger than 1000 bytes"
        assert fetcher(max_bytes=len(body)).fetch_image(srv.url + "/big.png") == (body, "image/png")


def test_oversize_chunked_without_content_length():
    # more than loopback's socket buffers can ever hold (up to 200 MB, sent only while the
    # reader keeps reading), so the fake always meets the closed connection it waits for
    pieces = itertools.chain([PNG], itertools.repeat(bytes(65536), 3200))
    with FakeServer(lambda req: Reply(200, {"Content-Type": "image/png"}, iter(pieces))) as srv:
        err = refused(fetcher(max_bytes=1000).fetch_image, srv.url + "/big.png")
        assert err.message == "Image URL refused: the image is larger than 1000 bytes"
        assert srv.disconnects.wait(5) and not srv.completed.is_set()


def test_slow_server_exceeds_the_overall_deadline():
    # each piece arrives well within any per-read timeout; only the overall deadline stops it
    pieces = [PNG] + [pause(0.2), b"x"] * 50
    with FakeServer(lambda req: Reply(200, {"Content-Type": "image/png"}, iter(pieces))) as srv:
        err = refused(fetcher(timeout=1.0).fetch_image, srv.url + "/slow.png")
        assert err.message == "could not fetch image: timed out"


def test_server_that_never_answers_times_out():
    with FakeServer(lambda req: time.sleep(3) or Reply(200, {}, PNG)) as srv:
        err = refused(fetcher(timeout=0.5).fetch_image, srv.url + "/hang.png")
        assert err.message == "could not fetch image: timed out"


def test_non_image_content_is_refused():
    with FakeServer(lambda req: Reply(200, {"Content-Type": "text/html; charset=utf-8"},
                                 b"<html>hi</html>")) as srv:
        err = refused(fetcher().fetch_image, srv.url + "/page")
        assert err.message == ("Image URL refused: the URL did not return a supported image "
                               "(content type text/html; supported: png, jpeg, gif, webp)")


def test_svg_is_refused():
    with FakeServer(lambda req: Reply(200, {"Content-Type": "image/svg+xml"}, b"<svg/>")) as srv:
        assert "content type image/svg+xml" in refused(fetcher().fetch_image, srv.url).message


def test_sniffed_type_wins_over_a_wrong_declaration():
    with FakeServer(lambda req: Reply(200, {"Content-Type": "image/png"}, JPEG)) as srv:
        assert fetcher().fetch_image(srv.url) == (JPEG, "image/jpeg")


def test_empty_body_is_refused():
    with FakeServer(lambda req: Reply(200, {"Content-Type": "image/png"}, b"")) as srv:
        assert refused(fetcher().fetch_image, srv.url).message == \
            "could not fetch image: the response was empty"


@pytest.mark.parametrize("status", [404, 403, 500])
def test_upstream_http_error_is_a_400(status):
    with FakeServer(lambda req: Reply(status, {"Content-Type": "text/plain"}, b"nope")) as srv:
        err = refused(fetcher().fetch_image, srv.url + "/missing.png")
        assert err.message == f"could not fetch image: status {status}"


def test_connection_refused():
    with FakeServer(lambda req: Reply()) as srv:
        port = srv.port
    err = refused(fetcher().fetch_image, f"http://127.0.0.1:{port}/x.png")
    assert err.message == "could not fetch image: the connection failed"


# --- https: SNI and certificate checked for the original name, connection to the checked IP ---

@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl not available")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"),
                    "-subj", "/CN=images.test", "-addext", "subjectAltName=DNS:images.test"],
                   check=True, capture_output=True)
    return str(d / "cert.pem"), str(d / "key.pem")


def tls_server(cert, handle) -> FakeServer:
    srv = FakeServer(handle)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)
    srv._httpd.socket = ctx.wrap_socket(srv._httpd.socket, server_side=True)
    return srv


def test_https_verifies_the_original_host_name(cert, monkeypatch):
    monkeypatch.setattr(media, "resolve", lambda host, port: ["127.0.0.1"])
    with tls_server(cert, lambda req: Reply(200, {"Content-Type": "image/png"}, PNG)) as srv:
        f = fetcher(ca_certs=cert[0])
        assert f.fetch_image(f"https://images.test:{srv.port}/a.png") == (PNG, "image/png")
        assert srv.last.headers["host"] == f"images.test:{srv.port}"
        err = refused(f.fetch_image, f"https://other.test:{srv.port}/a.png")  # name mismatch
        assert err.message == "could not fetch image: the TLS handshake or certificate check failed"
        err = refused(fetcher().fetch_image, f"https://images.test:{srv.port}/a.png")  # untrusted
        assert "TLS" in err.message
