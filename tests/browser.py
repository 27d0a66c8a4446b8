"""Headless Chromium (Debian's package) driven over the DevTools protocol, for report tests.

The protocol runs over `--remote-debugging-pipe` (JSON messages ending in NUL on fds 3 and
4), so no WebSocket client and no listening port are needed.
"""

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

CHROMIUM = "chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio",
         "--window-size=1280,900"]
# Installed before the page's own scripts: records every Content-Security-Policy violation,
# i.e. every request the page tried to make and the policy stopped.
PNG = b"\x89PNG\r\n\x1a\n"
# `task report`'s panels: the group of marks each series draws in (Vega-Lite's names)
TASK_PANELS = {"atomic": "iterations_layer_0_marks", "failed": "iterations_layer_1_marks",
               "cpu": "cpu_marks", "memory": "memory_marks", "deployment": "deployment_marks"}
RECORD_VIOLATIONS = ("window.__violations = []; document.addEventListener("
                     "'securitypolicyviolation', e => window.__violations.push("
                     "e.violatedDirective + ' ' + e.blockedURI));")


class Browser:
    """One headless Chromium with a fresh profile, one page, every network request recorded."""

    def __init__(self) -> None:
        self._profile = tempfile.mkdtemp(prefix="benchbed-chromium-")
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        # out of the way of fds 3 and 4, which the child gets them as
        theirs = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (commands_read,
                                                                         replies_write)]
        for fd in (commands_read, replies_write):
            os.close(fd)

        def as_fds_3_and_4() -> None:
            os.dup2(theirs[0], 3)
            os.dup2(theirs[1], 4)

        self.process = subprocess.Popen(
            [shutil.which(CHROMIUM) or CHROMIUM, *FLAGS, f"--user-data-dir={self._profile}",
             "--remote-debugging-pipe", "about:blank"],
            pass_fds=(3, 4), preexec_fn=as_fds_3_and_4, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        for fd in theirs:
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session = self._attach()

    def _attach(self) -> str:
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        session = self.call("Target.attachToTarget", targetId=page["targetId"],
                            flatten=True)["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            self.call(f"{domain}.enable", session=session)
        self.call("Page.addScriptToEvaluateOnNewDocument", source=RECORD_VIOLATIONS,
                  session=session)
        return session

    def call(self, method: str, session: str | None = None, timeout: float = 60,
             **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str) -> None:
        self.call("Page.navigate", session=self.session, url=url)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", session=self.session, expression=expression,
                           returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60) -> Any:
        """Evaluate until the expression is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise TimeoutError(f"never true: {expression}")

    def requested_urls(self) -> list[str]:
        """Every URL the page asked the network stack for, its own document included."""
        return [event["params"]["request"]["url"] for event in self.events
                if event.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, path: Path) -> None:
        import base64

        data = self.call("Page.captureScreenshot", session=self.session, format="png",
                         captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", timeout=10)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)
        shutil.rmtree(self._profile, ignore_errors=True)


@contextlib.contextmanager
def rendered(html: Path, screenshot: Path, secrets: Sequence[str],
             smallest_png: int) -> Iterator[Browser]:
    """A report page open in headless Chromium once its charts rendered. Leaving it checks
    what every report must hold: no secret in the page as drawn, no request beyond the page
    itself, no Content-Security-Policy violation, and a screenshot of a drawn page."""
    assert shutil.which(CHROMIUM), "chromium is missing: tools/host-packages.sh installs it"
    browser = Browser()
    try:
        browser.open(html.as_uri())
        assert browser.wait_for("document.body && document.body.dataset.chart") == "rendered", \
            browser.evaluate("document.getElementById('chart-error').textContent")
        yield browser
        page = browser.evaluate("document.documentElement.outerHTML")
        assert [secret for secret in secrets if secret in page] == []
        browser.screenshot(screenshot)
        assert browser.requested_urls() == [html.as_uri()]
        assert browser.evaluate("window.__violations") == []
    finally:
        browser.close()
    assert screenshot.read_bytes()[:8] == PNG
    assert screenshot.stat().st_size > smallest_png


def task_marks(browser: Browser) -> dict[str, int]:
    """How many marks each panel of a `task report` drew."""
    return {name: browser.evaluate(
        f"document.querySelectorAll('#timeline svg g.{group} > path').length")
        for name, group in TASK_PANELS.items()}
