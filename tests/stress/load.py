#!/usr/bin/env python3
"""The stress run's load generator: CONNS keep-alive connections, each sending GET PATH as soon
as the previous answer is in, for SECONDS or until SIGTERM; prints one JSON object: the number
of good answers and every failure as [CLOCK_MONOTONIC seconds, kind].

Unlike wrk it says what each failure was, because one kind is httpd's own and the rest are not:

  keepalive-race  the server closed a kept-alive connection without answering the request sent
                  on it: httpd's graceful restart closes connections between keep-alive
                  requests, and a request already on its way is lost (RFC 9112 9.3.1 lets
                  clients retry exactly these). Plain httpd has them too.
  closed-fresh    closed before answering the first request on a new connection
  truncated       closed or reset after part of an answer
  timeout         no answer within TIMEOUT seconds
  connect         the connection was refused or failed
  non2xx          an answer other than 2xx

`load.py --self-test` checks that every kind is told apart, against a small fake server.
"""

import argparse
import json
import signal
import socket
import sys
import threading
import time

KINDS = ("keepalive-race", "closed-fresh", "truncated", "timeout", "connect", "non2xx")


class Closed(Exception):
    """The peer closed or reset the connection; `partial` says whether any answer byte came."""

    def __init__(self, partial):
        super().__init__()
        self.partial = partial


class Client:
    """One keep-alive connection that reconnects after every close."""

    def __init__(self, port, path, timeout):
        self.port, self.timeout = port, timeout
        self.request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
        self.sock, self.answered = None, 0  # answers on the current connection

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None

    def once(self):
        """Sends one request and reads its answer; returns None or the kind of failure."""
        if self.sock is None:
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
            except OSError:
                self.sock = None
                return "connect"
            self.answered = 0
        try:
            status, keep_alive = self.exchange()
        except Closed as closed:
            self.close()
            if closed.partial:
                return "truncated"
            return "keepalive-race" if self.answered else "closed-fresh"
        except socket.timeout:
            self.close()
            return "timeout"
        self.answered += 1
        if not keep_alive:
            self.close()
        return None if 200 <= status < 300 else "non2xx"

    def exchange(self):
        try:
            self.sock.sendall(self.request)
        except (BrokenPipeError, ConnectionResetError):
            raise Closed(partial=False) from None
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.recv(bool(data))
        head, body = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in
                   (line.split(":", 1) for line in lines[1:] if ":" in line)}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            body += self.recv(True)
        return status, headers.get("connection", "").lower() != "close"

    def recv(self, partial):
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            raise Closed(partial) from None
        if not data:
            raise Closed(partial)
        return data


def run(port, path, seconds, conns, timeout=10.0):
    deadline = time.monotonic() + seconds
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    lock = threading.Lock()
    result = {"ok": 0, "failures": []}

    def connection():
        client, ok, failures = Client(port, path, timeout), 0, []
        while not stop.is_set() and time.monotonic() < deadline:
            kind = client.once()
            if kind is None:
                ok += 1
            else:
                failures.append([time.monotonic(), kind])
                if kind == "connect":
                    time.sleep(0.01)
        client.close()
        with lock:
            result["ok"] += ok
            result["failures"] += failures

    threads = [threading.Thread(target=connection) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result["failures"].sort()
    return result


class FakeServer:
    """127.0.0.1 server for the self-test; what it does depends on the path asked for."""

    OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            conn, _ = self.listener.accept()
            threading.Thread(target=self.connection, args=(conn,), daemon=True).start()

    def connection(self, conn):
        with conn:
            answered = 0
            while True:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                path = data.split()[1]
                if path == b"/race" and answered == 1:
                    return  # as httpd at a graceful restart: close instead of answering
                if path == b"/close-fresh" or (path == b"/race" and answered > 1):
                    return
                if path == b"/truncate":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
                    return
                if path == b"/hang":
                    time.sleep(1)
                    return
                if path == b"/error":
                    conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
                elif path == b"/close":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
                                 b"Content-Length: 2\r\n\r\nok")
                    return
                else:
                    conn.sendall(self.OK)
                answered += 1


def self_test():
    """Every kind, and the clean cases, as the classifier must name them."""
    server = FakeServer()
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        refused = unused.getsockname()[1]  # bound, not listening: connect is refused
        cases = [
            (server.port, "/ok", [None, None, None]),
            (server.port, "/close", [None, None]),  # Connection: close, then a new connection
            (server.port, "/race", [None, "keepalive-race", None]),
            (server.port, "/close-fresh", ["closed-fresh"]),
            (server.port, "/truncate", ["truncated"]),
            (server.port, "/hang", ["timeout"]),
            (server.port, "/error", ["non2xx", "non2xx"]),
            (refused, "/ok", ["connect"]),
        ]
        wrong = []
        for port, path, expected in cases:
            client = Client(port, path, timeout=0.3)
            got = [client.once() for _ in expected]
            client.close()
            if got != expected:
                wrong.append(f"{path}: expected {expected}, got {got}")
    if wrong:
        sys.exit("load.py self-test failed:\n" + "\n".join(wrong))
    print(f"load.py self-test: {len(cases)} cases classified as expected", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int)
    parser.add_argument("--path", default="/1k.html")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--conns", type=int, default=8)
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    if args.self_test:
        self_test()
        return
    json.dump(run(args.port, args.path, args.seconds, args.conns), sys.stdout)


if __name__ == "__main__":
    main()
