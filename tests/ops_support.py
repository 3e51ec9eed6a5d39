"""A real ``twistd est`` (tests/test_e2e_interop.EstServer) with the
operator's tables added to its config, and plain HTTP to its admin listener."""
from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

from .test_e2e_interop import EstServer, free_port


class OperatedServer(EstServer):
    def __init__(self, base: Path, extra: str = "", admin: bool = True, **kw):
        super().__init__(base, **kw)
        self.admin_port = free_port() if admin else None
        self.extra = extra

    def prepare(self) -> None:
        super().prepare()
        text = self.extra
        if self.admin_port is not None:
            text += f'\n[admin]\nhost = "127.0.0.1"\nport = {self.admin_port}\n'
        with open(self.config, "a") as f:
            f.write(text)

    def admin_get(self, path: str) -> tuple[int, str, bytes]:
        """Blocking: (status, content type, body) of one GET on the admin listener."""
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.getheader("content-type", ""), resp.read()
        finally:
            conn.close()

    def wait_ready(self, deadline: float = 30) -> dict:
        """Blocking: until the admin /readyz says ready; its body."""
        end = time.monotonic() + deadline
        body = None
        while time.monotonic() < end:
            try:
                status, _, raw = self.admin_get("/readyz")
                body = json.loads(raw)
                if status == 200:
                    return body
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"not ready after {deadline} s: {body}\n{self.log()}")


def metric_value(text: str, name: str, **labels) -> float | None:
    """The value of one sample in a Prometheus text exposition."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, rest = head.partition("{")
        if sample != name:
            continue
        have = dict(part.split("=", 1) for part in rest.rstrip("}").split(",") if "=" in part)
        if all(have.get(k) == f'"{v}"' for k, v in labels.items()):
            return float(value)
    return None
