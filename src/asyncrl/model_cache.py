"""Where the built-in models live: one dir per recipe version under the cache dir, written once.

It imports nothing heavy, so a process that only needs a cached model's path (`asyncrl rl`'s launcher,
every run) finds it without loading torch and transformers; the recipes that build a missing dir do.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

UNTRAINED_VERSIONS = {"tiny": "tiny-v1", "tiny-moe": "tiny-moe-v2", "tiny-qwen3-moe": "tiny-qwen3-moe-v2"}
"""Each untrained built-in model's cache dir name: bump the suffix whenever its recipe changes."""


def cache_root() -> Path:
    """`$ASYNCRL_CACHE_DIR`, else ~/.cache/asyncrl."""
    root = os.environ.get("ASYNCRL_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "asyncrl"


def cached_model_dir(name: str, build: Callable[[Path], object]) -> Path:
    """The model dir `name` under the cache dir, written by `build(dir)` on first use; safe against
    concurrent builders. Bump `name` whenever what `build` writes changes, so stale caches are never
    reused."""
    target = cache_root() / "models" / name
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: rename is atomic on one filesystem, so readers only ever
    # see a complete dir, and a losing concurrent builder just throws its copy away.
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=target.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
