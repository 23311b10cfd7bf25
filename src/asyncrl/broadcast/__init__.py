"""Shardcast: checkpoint distribution over HTTP, for inference nodes that share no disk with the trainer.

An origin (`asyncrl broadcast serve --weights-dir RUN/weights`) publishes each new weights dir as a
version: fixed-size shards under a manifest of checksums, optionally with deltas against the previous
version. Relays (`--upstream URL`) mirror and verify each version and serve it on, forming a tree.
Clients (`asyncrl broadcast fetch`, `fetch_version`, an inference server's `/update_weights` with a
`source`) download shards in parallel from several sources, check every byte, and write the HF dir
atomically. This package imports neither torch nor the trainer.

    from asyncrl.broadcast.client import fetch_version
    report = fetch_version(["http://relay:8200"], "latest", Path("weights/latest"))
"""
