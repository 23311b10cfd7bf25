"""How the processes of a run exchange batches, weights, metrics and status: through the run directory.

`layout` owns every path of a run and imports no torch (broadcast and the launcher use it); `batches`
writes and reads the orchestrator's batches for the trainer; `metrics` and `status` are what the launcher
reads; `retention` bounds what the run dir keeps.
"""
