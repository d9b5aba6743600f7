"""Where a daemon serves its metrics: `--metrics HOST:PORT` parsed.

A module of its own, without prometheus_client: every `nvo3 serve` parses the option, and a
daemon without `--metrics` never imports the metrics library (about 9 MB of memory)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricsAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> MetricsAddress:
        """HOST:PORT, [IPv6]:PORT, :PORT or PORT (127.0.0.1 when no host is given)."""
        host, port = "", text
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        elif ":" in text:
            host, _, port = text.rpartition(":")
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"bad --metrics {text!r}: expected HOST:PORT, :PORT or PORT "
                             "(port 0..65535)")
        return cls(host or "127.0.0.1", int(port))
