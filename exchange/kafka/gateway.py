"""A boundary gateway as its departments feel it: a throughput cap and added latency.

A department on a separate network zone (公安网 and the like) reaches its hub only through
a security gateway. The simulator models it at the department's edge, where its effect
shows: a producer behind a slow gateway falls behind schedule (publish delay grows),
and every record crossing it, in or out, arrives ``latency_ms`` later.
"""

from __future__ import annotations

import time

from schemas.scenario import Gateway


class GatewayGate:
    """A token bucket for the gateway's records/s (a tenth of a second of burst)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.latency_s = gateway.latency_ms / 1000
        self.rate = gateway.max_records_per_s
        self._capacity = max(1.0, (self.rate or 0) / 10)
        self._tokens = self._capacity
        self._at = time.monotonic()

    def allowance(self, wanted: int) -> int:
        """How many of ``wanted`` records may cross now (all of them without a cap)."""
        if self.rate is None:
            return wanted
        now = time.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        n = min(wanted, int(self._tokens))
        self._tokens -= n
        return n
