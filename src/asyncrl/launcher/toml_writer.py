"""Writing configs back as TOML, so a run dir records what ran and child processes read their part."""

from __future__ import annotations

import json
from typing import Any

from asyncrl.config import BaseConfig


def to_toml(config: BaseConfig | dict[str, Any]) -> str:
    """TOML of a config (None values are left out: TOML has no null)."""
    data = config.model_dump(mode="json") if isinstance(config, BaseConfig) else config
    return _table(data, [])


def _table(table: dict[str, Any], prefix: list[str]) -> str:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and v is not None}
    out = "".join(f"{k} = {json.dumps(v)}\n" for k, v in scalars.items())
    for key, sub in ((k, v) for k, v in table.items() if isinstance(v, dict)):
        path = [*prefix, key]
        out += f"\n[{'.'.join(json.dumps(p) if not p.isidentifier() else p for p in path)}]\n" + _table(
            sub, path
        )
    return out
