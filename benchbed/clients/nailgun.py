"""A client of Fuel's Nailgun REST API (`http://MASTER:8000/api/v1/`), on requests.

Every request has a timeout, every error carries Nailgun's own `message`, and tasks are
polled by id until they are `ready`, backing off from FIRST_POLL to LONGEST_POLL; a task
in `error` fails at once. Paths, payloads and status codes follow fuel-web's
`nailgun/api/v1/urls.py` and handlers, in the forms of every release from 5.0 to 11.0
(docs/fuel.md has the table of what differs).
"""

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import requests

from benchbed.errors import BenchbedError, InputError

if TYPE_CHECKING:
    from benchbed.engines.fuel import FuelKeystone

REQUEST_TIMEOUT = 30.0
FIRST_POLL = 0.5
LONGEST_POLL = 10.0
BACKOFF = 1.5


class NailgunError(BenchbedError):
    """Nailgun refused a request or could not be reached; the message says which and why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NailgunInputError(InputError):
    """What the config gave is wrong: not a Nailgun URL, a certificate the configured CA
    does not verify, credentials Nailgun refuses (exit 2)."""


class NailgunNotFound(NailgunError):
    """404: the cluster, node or task does not exist (any more)."""


class TaskFailed(NailgunError):
    """A Nailgun task ended in `error`; carries the task's own message."""


class TaskTimeout(NailgunError):
    """A task was still running when the deployment's time ran out."""


@dataclass
class Backoff:
    """Waits between polls: FIRST_POLL growing by BACKOFF up to LONGEST_POLL, never past
    `deadline` (time.monotonic). A long task costs a request every LONGEST_POLL seconds."""

    deadline: float
    delay: float = FIRST_POLL

    def sleep(self) -> None:
        time.sleep(max(0.0, min(self.delay, self.deadline - time.monotonic())))
        self.delay = min(self.delay * BACKOFF, LONGEST_POLL)


class NailgunClient:
    """One Nailgun master: authenticated requests with timeouts, and task polling."""

    def __init__(self, api_url: str, *, token: str | None = None,
                 keystone: "FuelKeystone | None" = None, verify: bool | str = True,
                 request_timeout: float = REQUEST_TIMEOUT) -> None:
        """`verify`: True (the system's CAs), a CA bundle's path, or False (insecure)."""
        self.base = api_url.rstrip("/") + "/"
        self.request_timeout = request_timeout
        self._keystone = keystone
        self._token: str | None = token
        # given with every request: requests lets REQUESTS_CA_BUNDLE override a session's
        # `verify`, which would drop the configured CA
        self.verify = verify
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json"})

    def _keystone_token(self) -> str:
        """A token from the master's Keystone (Fuel 6.1 and later require one)."""
        from keystoneauth1 import exceptions as ks_exceptions
        from keystoneauth1 import session as ks_session
        from keystoneauth1.identity import v3

        assert self._keystone is not None
        creds = self._keystone
        auth = v3.Password(
            auth_url=creds.auth_url, username=creds.username, password=creds.password,
            project_name=creds.project_name or creds.tenant_name or "admin",
            user_domain_name=creds.user_domain_name,
            project_domain_name=creds.project_domain_name)
        session = ks_session.Session(auth=auth, verify=self.verify,
                                     timeout=self.request_timeout)
        try:
            token = session.get_token()
        except ks_exceptions.SSLError as error:
            raise NailgunInputError(f"config https_cacert: the TLS certificate of Keystone at "
                                    f"{creds.auth_url} is not verified by "
                                    f"{_trust(self.verify)}: {_ssl_reason(error)}") from None
        except ks_exceptions.Unauthorized as error:
            raise NailgunInputError(f"config keystone: Keystone at {creds.auth_url} refused "
                                    f"the credentials: {error}") from None
        except ks_exceptions.ClientException as error:
            raise NailgunError(f"Keystone at {creds.auth_url} gave no token for Nailgun: "
                               f"{error}") from None
        if not token:
            raise NailgunError(f"Keystone at {creds.auth_url} gave no token for Nailgun")
        return token

    def _headers(self) -> dict[str, str]:
        if self._token is None and self._keystone is not None:
            self._token = self._keystone_token()
        return {"X-Auth-Token": self._token} if self._token else {}

    def request(self, method: str, path: str, payload: Any = None, *, public: bool = False
                ) -> Any:
        """Send one request; return the decoded JSON body (None for an empty answer).
        `public`: a path Nailgun serves without a token (urls.py public_urls)."""
        url = urljoin(self.base, path)
        where = f"{method} {url}"
        for attempt in (1, 2):
            try:
                response = self.session.request(method, url, json=payload,
                                                headers={} if public else self._headers(),
                                                verify=self.verify,
                                                timeout=self.request_timeout)
            except requests.exceptions.SSLError as error:
                raise NailgunInputError(
                    f"config https_cacert: Nailgun's TLS certificate at {self.base} is not "
                    f"verified by {_trust(self.verify)}: {_reason(error)}") from None
            except requests.Timeout:
                raise NailgunError(f"Nailgun did not answer {where} within "
                                   f"{self.request_timeout:.0f}s") from None
            except requests.RequestException as error:
                raise NailgunError(f"cannot reach Nailgun at {self.base}: "
                                   f"{_reason(error)}") from None
            # a Keystone token expired during a long deployment: fetch a new one, once
            if response.status_code == 401 and self._keystone is not None and attempt == 1:
                self._token = None
                continue
            break
        if response.status_code == 401:
            given = "keystone" if self._keystone is not None else "token"
            raise NailgunInputError(f"config {given}: Nailgun refused {where}: 401 "
                                    f"{_message(response)}")
        return _decode(response, where)

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, payload: Any) -> Any:
        return self.request("POST", path, payload)

    def put(self, path: str, payload: Any) -> Any:
        return self.request("PUT", path, payload)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    # -- the calls a deployment makes ------------------------------------------------------

    def version(self) -> dict[str, Any]:
        """GET version/ (public, no token): `release` is the Fuel release, e.g. "8.0"."""
        answer = self.request("GET", "version/", public=True)
        if not isinstance(answer, dict) or not answer.get("release"):
            raise NailgunError(f"Nailgun at {self.base} answered version/ without a release: "
                               f"{str(answer)[:100]}")
        return answer

    def releases(self) -> list[dict[str, Any]]:
        return self.get("releases/")

    def nodes(self, cluster_id: int | None = None) -> list[dict[str, Any]]:
        return self.get(f"nodes/?cluster_id={cluster_id}" if cluster_id else "nodes/")

    def free_nodes(self) -> list[dict[str, Any]]:
        """Discovered nodes that belong to no cluster (`?cluster_id=` with no value)."""
        return [node for node in self.get("nodes/?cluster_id=") if node.get("cluster") is None]

    def clusters(self) -> list[dict[str, Any]]:
        return self.get("clusters/")

    def cluster(self, cluster_id: int) -> dict[str, Any]:
        return self.get(f"clusters/{cluster_id}/")

    def create_cluster(self, data: dict[str, Any]) -> dict[str, Any]:
        return self.post("clusters/", data)

    def assign_nodes(self, cluster_id: int, roles_by_node: dict[int, list[str]]) -> None:
        """Every node in one bulk `PUT nodes/`, as pending additions with their roles."""
        self.put("nodes/", [{"id": node_id, "cluster_id": cluster_id, "pending_roles": roles,
                             "pending_addition": True}
                            for node_id, roles in roles_by_node.items()])

    def network_configuration(self, cluster_id: int, provider: str) -> dict[str, Any]:
        return self.get(f"clusters/{cluster_id}/network_configuration/{provider}/")

    def verify_networks(self, cluster_id: int, provider: str,
                        config: dict[str, Any]) -> dict[str, Any]:
        return self.put(f"clusters/{cluster_id}/network_configuration/{provider}/verify/",
                        config)

    def save_networks(self, cluster_id: int, provider: str,
                      config: dict[str, Any]) -> dict[str, Any]:
        return self.put(f"clusters/{cluster_id}/network_configuration/{provider}/", config)

    def deploy_changes(self, cluster_id: int) -> dict[str, Any]:
        return self.put(f"clusters/{cluster_id}/changes/", {})

    def delete_cluster(self, cluster_id: int) -> dict[str, Any] | None:
        """The deletion task (Fuel 9.0 and later), or None: up to 8.0 Nailgun answers 202
        with `{}` (handlers/cluster.py at each tag)."""
        answer = self.delete(f"clusters/{cluster_id}/")
        return answer if isinstance(answer, dict) and "id" in answer else None

    def stop_deployment(self, cluster_id: int) -> dict[str, Any]:
        return self.put(f"clusters/{cluster_id}/stop_deployment/", {})

    def attributes(self, cluster_id: int) -> dict[str, Any]:
        return self.get(f"clusters/{cluster_id}/attributes/")

    def tasks(self, cluster_id: int) -> list[dict[str, Any]]:
        return self.get(f"tasks/?cluster_id={cluster_id}")

    def task(self, task_id: int) -> dict[str, Any]:
        return self.get(f"tasks/{task_id}/")

    def poll_task(self, task: dict[str, Any], *, deadline: float, what: str,
                  timeout: float) -> Iterator[dict[str, Any]]:
        """Yield the task at each poll while it runs; return once it is `ready`.

        `error` raises TaskFailed at once with Nailgun's message; still running at
        `deadline` (time.monotonic) raises TaskTimeout naming the task and its progress.
        """
        backoff = Backoff(deadline)
        reached = 0  # Nailgun sets a failed task to 100 %: report how far it had got
        while True:
            if task["status"] == "error":
                raise TaskFailed(f"{what} failed at {reached}%: "
                                 f"{_one_line(task.get('message')) or 'no message'}")
            if task["status"] == "ready":
                return
            reached = int(task.get("progress") or 0)
            yield task
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TaskTimeout(f"{what} timed out after {timeout:.0f}s: Nailgun task "
                                  f"{task['id']} is still {task['status']} at "
                                  f"{task.get('progress') or 0}%")
            backoff.sleep()
            task = self.task(task["id"])


def _decode(response: requests.Response, where: str) -> Any:
    status = response.status_code
    if status >= 400:
        kind = NailgunNotFound if status == 404 else NailgunError
        raise kind(f"Nailgun refused {where}: {status} {_message(response)}", status)
    if status == 204 or not response.content:
        return None
    if not response.headers.get("Content-Type", "").startswith("application/json"):
        raise NailgunInputError(f"config api_url: {where} answered with "
                                f"{response.headers.get('Content-Type') or 'no content type'}"
                                f", not JSON: not a Nailgun API URL")
    try:
        return response.json()
    except ValueError:
        raise NailgunError(f"Nailgun answered {where} with invalid JSON", status) from None


def _message(response: requests.Response) -> str:
    """Nailgun's error body is {"message": ..., "errors": [...]}; fall back to the text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        return _one_line(str(body["message"]))
    return _one_line(response.text)[:200] or response.reason or ""


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _reason(error: requests.RequestException) -> str:
    """The innermost cause (e.g. 'Connection refused'), not urllib3's nested repr."""
    cause: BaseException | None = error
    while cause is not None and cause.__context__ is not None:
        cause = cause.__context__
    text = str(cause or error)
    return text.split("] ", 1)[-1] if "] " in text else text


def _trust(verify: bool | str) -> str:
    return f"the CA in {verify}" if isinstance(verify, str) else \
        "the system's CAs (give https_cacert, or https_insecure)"


def _ssl_reason(error: Exception) -> str:
    """OpenSSL's own words ("certificate verify failed: ..."), not the wrapped reprs."""
    found = re.search(r"certificate verify failed: [^(')\]]+", str(error))
    return found.group(0).strip() if found else "certificate verify failed"
