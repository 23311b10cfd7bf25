"""The built-in torch engine: continuous batching over a slot KV cache, sampling, and TOPLOC proof capture.
Knows nothing of HTTP."""
