"""Scripted failures for the loopback vendors: "answer the next N matching requests with …"."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Response, jsonify

__all__ = ["Faults", "Fault"]


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    after: bool = False  # do the work, then answer with the fault (a lost answer)


class Faults:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, method: str, path: str, status: int, body: Any = None,
            headers: dict[str, str] | None = None, times: int = 1, after: bool = False) -> None:
        with self._lock:
            self._faults.append(Fault(method.upper(), re.compile(path), status, body,
                                      headers or {}, times, after))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str, after: bool = False) -> Response | None:
        with self._lock:
            for fault in self._faults:
                if fault.after == after and fault.method in (method, "*") and fault.path.search(path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    break
            else:
                return None
        response = jsonify(fault.body if fault.body is not None else {"error": "injected"})
        response.status_code = fault.status
        response.headers.update(fault.headers)
        return response
