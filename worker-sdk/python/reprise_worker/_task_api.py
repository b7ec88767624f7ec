"""The runtime's task API over HTTP (`http.client`, standard library only).

    POST /v1/activity-tasks/poll              {"activities": [...], "wait_ms": N}
         200 task | 204 no task within wait_ms
    POST /v1/activity-tasks/{token}/heartbeat {"details": ...}
    POST /v1/activity-tasks/{token}/complete  {"output": ...}
    POST /v1/activity-tasks/{token}/fail      {"error_type", "message", "details", "non_retryable"}
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.parse
from typing import Any, Optional, Tuple


class TaskApiUnreachable(Exception):
    """No HTTP answer: connection refused or reset, timeout, bad response."""


class TaskApi:
    def __init__(self, api_url: str, api_key: Optional[str]):
        parsed = urllib.parse.urlsplit(api_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(
                f"api_url must be http(s)://host[:port], got {api_url!r}"
            )
        self.url = api_url.rstrip("/")
        self._scheme = parsed.scheme
        self._host = parsed.hostname
        self._port = parsed.port
        self._base_path = parsed.path.rstrip("/")
        self._api_key = api_key
        # The connection of the poll in flight, so `abort_poll` can end it.
        self._poll_connection: Optional[http.client.HTTPConnection] = None
        self._poll_lock = threading.Lock()
        self._poll_aborted = False

    def poll(self, activities: list, wait_ms: int) -> Tuple[int, Any]:
        """Long-polls for a task; `abort_poll` (from another thread) ends it."""
        body = {"activities": activities, "wait_ms": wait_ms}
        # The server answers within wait_ms; the margin covers a busy server.
        return self._post(
            "/v1/activity-tasks/poll", body, wait_ms / 1000 + 10, is_poll=True
        )

    def abort_poll(self) -> None:
        """Ends the poll in flight (and any later one) at once."""
        with self._poll_lock:
            self._poll_aborted = True
            connection = self._poll_connection
        if connection is not None and connection.sock is not None:
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def report(self, token: str, route: str, body: dict) -> Tuple[int, Any]:
        quoted = urllib.parse.quote(token, safe="")
        return self._post(f"/v1/activity-tasks/{quoted}/{route}", body, 10)

    def _connect(self, timeout_s: float) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout_s)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout_s)

    def _post(
        self, path: str, body: dict, timeout_s: float, is_poll: bool = False
    ) -> Tuple[int, Any]:
        data = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        connection = self._connect(timeout_s)
        if is_poll:
            with self._poll_lock:
                if self._poll_aborted:
                    raise TaskApiUnreachable("the poll was aborted: the worker is stopping")
                self._poll_connection = connection
        try:
            connection.connect()
            if is_poll and self._poll_aborted:
                # abort_poll ran between registering and connecting.
                raise TaskApiUnreachable("the poll was aborted: the worker is stopping")
            connection.request("POST", self._base_path + path, body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as error:
            raise TaskApiUnreachable(f"{type(error).__name__}: {error}") from error
        finally:
            if is_poll:
                with self._poll_lock:
                    self._poll_connection = None
            connection.close()
        if not raw:
            return status, None
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, {"error": raw.decode("utf-8", errors="replace")[:500]}
