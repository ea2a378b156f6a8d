"""Hugging Face hub access that fails fast: no hanging on a machine without network.

Offline (`HF_HUB_OFFLINE=1` or `HF_DATASETS_OFFLINE=1`) only the local hub cache is consulted.
Otherwise a short TCP probe of the endpoint runs first, so an unreachable hub costs seconds, not
the minutes of HTTP retries."""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlparse

from adcbench.errors import DatasetNotFoundError

PROBE_TIMEOUT_S = 3.0


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def hub_offline() -> bool:
    return _truthy("HF_HUB_OFFLINE") or _truthy("HF_DATASETS_OFFLINE")


def sync_offline() -> None:
    """Make the HF libraries honour HF_HUB_OFFLINE even if it was set after they were imported
    (they read it once, at import), so an offline lookup fails at once instead of retrying."""
    if not hub_offline():
        return
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        import datasets.config

        datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    except ImportError:  # datasets is optional for model-only use
        pass


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub endpoint opens within `timeout` seconds. Behind a
    proxy a direct connection says nothing, so the probe is skipped and the libraries decide."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def one_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_hub_split(hub_id: str, config: str | None, split: str, unreachable: str, gated: bool = False) -> Any:
    """`datasets.load_dataset(hub_id, config, split=split)`, or DatasetNotFoundError(unreachable).
    `gated`: `unreachable` already explains the token; otherwise a 401/403 adds that hint."""
    if not hub_offline() and not hub_reachable():
        raise DatasetNotFoundError(unreachable)
    sync_offline()
    import datasets

    try:
        return datasets.load_dataset(hub_id, config, split=split)
    except Exception as exc:  # connection, auth, missing-cache errors all mean "not available here"
        why = one_line(exc)
        if not gated and any(s in why.lower() for s in ("gated", "401", "403", "unauthorized")):
            why += f"; {hub_id} is gated: accept its terms on huggingface.co and set HF_TOKEN"
        raise DatasetNotFoundError(f"{unreachable} [{why}]") from None
