"""TOPLOC: proofs that rollouts came from the claimed model (Ong et al., 2025, arXiv 2501.16007).

The built-in engine builds the proofs while it generates (`"toploc": true`); `verify_rollouts` checks
them, with the sampling and termination checks INTELLECT-2 added, by one prefill pass of the claimed
model; `asyncrl toploc verify` does so for a rollouts file.
"""
