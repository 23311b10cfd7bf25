"""Config of `asyncrl view`."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, model_validator

from asyncrl.config_loader import BaseConfig
from asyncrl.network import is_loopback

TOKEN_ENV = "ASYNCRL_VIEW_TOKEN"


class ViewConfig(BaseConfig):
    """`asyncrl view RUN_DIR`: curves and rollouts of a run, in the browser, updated as steps land."""

    run_dir: Path | None = None
    """The run dir (an `asyncrl rl` output_dir, running or finished); also the first positional argument."""

    host: str = "127.0.0.1"
    """Address to listen on. The page shows every prompt and completion: any but a loopback address
    requires a token."""

    port: int = Field(8765, ge=0, le=65535)
    """TCP port (0 picks a free one)."""

    token: str | None = Field(None, exclude=True)
    """Token the page must be opened with (`http://HOST:PORT/?token=TOKEN`); default: $ASYNCRL_VIEW_TOKEN."""

    @model_validator(mode="after")
    def _token_off_loopback(self) -> ViewConfig:
        if not is_loopback(self.host) and not (self.token or os.environ.get(TOKEN_ENV)):
            raise ValueError(
                f"host {self.host} is reachable from other machines: give --token (or ${TOKEN_ENV}), "
                "or keep the default host 127.0.0.1"
            )
        return self
