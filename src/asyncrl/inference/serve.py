"""`asyncrl inference`: the backend `inference.backend` names behind the HTTP API, served until interrupted.
The one place that knows both the API and the engines (api/, torch/, vllm/ know nothing of each other)."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext

import uvicorn

from asyncrl.inference.api.access import Access
from asyncrl.inference.api.app import create_app
from asyncrl.inference.api.served import Served
from asyncrl.inference.backend import Backend
from asyncrl.inference.config import InferenceServerConfig
from asyncrl.models import eos_token_ids, load_tokenizer, resolve_model_path


def open_backend(config: InferenceServerConfig) -> AbstractContextManager[Backend]:
    """The engine `inference.backend` names, loaded (vLLM: started and serving) on entering, and stopped
    (vLLM: its processes ended) on leaving."""
    if config.inference.backend == "vllm":
        from asyncrl.inference.vllm.backend import VLLMBackend

        return VLLMBackend.launched(config, resolve_model_path(config.model.path))
    from asyncrl.inference.torch.engine import TorchEngine

    return nullcontext(TorchEngine(config.model.path, config.model.dtype, config.inference, config.seed))


def serve(config: InferenceServerConfig) -> None:
    """Run the server until interrupted. Model problems (and vLLM's start-up errors) surface here, before
    the port is bound."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    access = Access.from_config(config.inference)
    model_dir = str(resolve_model_path(config.model.path))
    tokenizer = load_tokenizer(config.model.path)
    with open_backend(config) as backend:
        name = config.inference.served_model_name or config.model.served_name
        served = Served(backend, tokenizer, name, eos_token_ids(model_dir, tokenizer), config.inference)
        app = create_app(served, access)
        server = uvicorn.Server(
            # uvicorn's own INFO lines say where it listens (the port, when 0 picked one); one line per
            # request would bury the rest.
            uvicorn.Config(app, host=config.inference.host, port=config.inference.port, access_log=False)
        )
        if config.inference.backend == "vllm":
            # A server whose vLLM died stops (and says why) rather than answer 503 forever.
            backend.stop_serving = lambda: setattr(server, "should_exit", True)  # type: ignore[attr-defined]
        server.run()
