"""vLLM behind the backend contract: a managed vLLM child process spoken to token-in/token-out, with
in-place weight reloads through a worker extension."""
