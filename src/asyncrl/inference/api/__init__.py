"""The HTTP layer: request and response models, routes on a module-level router taking the backend from
app state, streaming, and the output parsers. Knows nothing of how tokens are generated."""
