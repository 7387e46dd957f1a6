"""The ``--json`` path's HTTP client against a real HTTP/1.1 server (the standard
library's), for the answers a gateway, or a proxy in front of it, can give: a
``Content-Length`` body on a kept connection, chunked, closed-delimited, no answer at all,
none in time, and nobody listening."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support.ports import free_port

from cortex.console.transport import Transport, TransportError


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: list[int] = []

    def setup(self) -> None:
        super().setup()
        Handler.connections.append(self.client_address[1])

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/length":
            self._send(200, b'{"ok":true}', Content_Length="11")
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b'{"parts":', b"[1,2,3]", b"}"):
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        elif self.path == "/until-close":
            self._send(200, b"all of it", Connection="close")
            self.close_connection = True
        elif self.path == "/missing":
            self._send(404, b'{"error":{"message":"no"}}', Content_Length="26")
        elif self.path == "/hang-up":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif self.path == "/slow":
            time.sleep(1.5)
            with contextlib.suppress(OSError):  # the client gave up: nobody reads this
                self._send(200, b"late", Content_Length="4")
        elif self.path == "/short":
            self._send(200, b"half", Content_Length="8")
            self.close_connection = True

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        seen = {
            "path": self.path,
            "body": body.decode(),
            "host": self.headers["Host"],
            "authorization": self.headers["Authorization"],
        }
        data = json.dumps(seen).encode()
        self._send(200, data, Content_Length=str(len(data)))


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def transport(url: str, timeout: float = 5.0) -> Transport:
    return Transport(url, {"authorization": "Bearer t"}, timeout)


def test_a_length_framed_answer_and_the_connection_kept_for_the_next(server):
    Handler.connections.clear()
    http = transport(server)
    first = http.request("GET", "/length")
    second = http.request("GET", "/length")
    http.close()
    assert (first.status_code, first.reason_phrase, first.content) == (200, "OK", b'{"ok":true}')
    assert second.content == first.content
    assert len(Handler.connections) == 1, "one connection for both requests"


def test_a_chunked_answer_is_joined(server):
    reply = transport(server).request("GET", "/chunked")
    assert reply.content == b'{"parts":[1,2,3]}'


def test_an_answer_that_ends_with_the_connection(server):
    http = transport(server)
    assert http.request("GET", "/until-close").content == b"all of it"
    assert http.request("GET", "/length").status_code == 200, "a new connection"


def test_a_post_sends_its_body_query_host_and_headers(server):
    reply = transport(server + "/base/").request(
        "POST", "/echo", params={"wait": "false"}, content=b'{"a":1}'
    )
    seen = json.loads(reply.content)
    assert seen["path"] == "/base/echo?wait=false"
    assert seen["body"] == '{"a":1}'
    assert seen["host"] == server.removeprefix("http://")
    assert seen["authorization"] == "Bearer t"


def test_an_error_status_is_an_answer_not_a_failure(server):
    reply = transport(server).request("GET", "/missing")
    assert reply.is_error and reply.status_code == 404 and b'"no"' in reply.content


def test_a_server_that_hangs_up_without_answering(server):
    with pytest.raises(TransportError) as caught:
        transport(server).request("GET", "/hang-up")
    assert caught.value.kind == "broken"
    assert caught.value.reason == "Remote end closed connection without response"


def test_a_body_cut_short(server):
    with pytest.raises(TransportError) as caught:
        transport(server).request("GET", "/short")
    assert caught.value.kind == "broken" and "4 more expected" in caught.value.reason


def test_no_answer_in_time(server):
    with pytest.raises(TransportError) as caught:
        transport(server, timeout=0.3).request("GET", "/slow")
    assert (caught.value.kind, caught.value.reason) == ("timeout", "no answer within 0.3 s")


def test_nobody_listening():
    with pytest.raises(TransportError) as caught:
        transport(f"http://127.0.0.1:{free_port()}").request("GET", "/fleet")
    assert caught.value.kind == "connect"
    assert caught.value.reason == "[Errno 111] Connection refused"
