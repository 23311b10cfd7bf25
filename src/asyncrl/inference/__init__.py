"""The inference process: an OpenAI-compatible server in front of a continuous-batching engine."""
