"""The EC2 stand-in: a real moto server on loopback (EC2 itself cannot be reached from here),
and a proxy in front of it that can hold or drop chosen calls, so tests can kill benchbed
mid-call or lose an answer on the way back."""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

START_TIMEOUT = 60
# One Debian-like image instead of moto's 1,300 defaults, which make every reset and
# image lookup take seconds.
DEBIAN_AMI = {
    "ami_id": "ami-0b6ed1d2e3f405a6c", "state": "available", "public": True,
    "owner_id": "136693071363", "image_location": "debian/debian-12-amd64",
    "sriov": "simple", "root_device_type": "ebs", "root_device_name": "/dev/xvda",
    "description": "Debian 12 (stand-in)", "image_type": "machine", "platform": None,
    "architecture": "x86_64", "name": "debian-12-amd64-standin",
    "virtualization_type": "hvm", "hypervisor": "xen",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def moto_server(**env: str) -> Iterator[str]:
    """Start `moto_server` on a free loopback port; yield its URL; stop it (by pid) after."""
    binary = Path(sys.executable).with_name("moto_server")
    command = [str(binary) if binary.exists() else shutil.which("moto_server") or "moto_server"]
    port = _free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as images:
        json.dump([DEBIAN_AMI], images)
    process = subprocess.Popen([*command, "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "MOTO_AMIS_PATH": images.name, **env})
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, "moto_server exited at start"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        os.unlink(images.name)


class FaultProxy:
    """Forwards EC2 calls to moto; records each call's action; can hold or drop chosen ones.

    `hold_after`: forward such a call, then keep the answer until `release` is set (the
    cloud has acted, the caller has not heard). `hold_once_seen[a] = b`: the same for calls
    of action a made after a call of action b. `drop_once`: forward, then close the
    connection without answering, once per action (a lost answer).
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.actions: list[str] = []
        self.bodies: list[tuple[str, dict[str, list[str]]]] = []
        self.hold_after: set[str] = set()
        self.drop_once: set[str] = set()
        self.hold_once_seen: dict[str, str] = {}
        self.seen: dict[str, threading.Event] = {}
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def event(self, action: str) -> threading.Event:
        with self._lock:
            return self.seen.setdefault(action, threading.Event())

    def reset(self) -> None:
        with self._lock:
            self.actions.clear()
            self.bodies.clear()
            self.hold_after.clear()
            self.drop_once.clear()
            self.hold_once_seen.clear()
            self.seen.clear()
        self.release.clear()

    def count(self, action: str) -> int:
        with self._lock:
            return self.actions.count(action)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fields = parse_qs(body.decode())
                action = fields.get("Action", [""])[0]
                with proxy._lock:
                    after = proxy.hold_once_seen.get(action)
                    hold = action in proxy.hold_after or bool(after and after in proxy.actions)
                    proxy.actions.append(action)
                    proxy.bodies.append((action, fields))
                    drop = action in proxy.drop_once
                    proxy.drop_once.discard(action)
                upstream = http.client.HTTPConnection(proxy.upstream.hostname,
                                                      proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                upstream.request("POST", self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                upstream.close()
                if hold:
                    proxy.event(f"held {action}").set()
                proxy.event(action).set()
                if drop:
                    self.close_connection = True
                    return
                if hold:
                    proxy.release.wait(120)
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding",
                                           "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
