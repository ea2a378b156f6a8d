"""Layer 2, the core contracts: what a method is and how a run is identified and recorded.

Owns the stage contract and method registry (method.py), composition `A+B` (pipeline.py), typed
parameters and spec strings (params.py), the generic entry-point registry (registry.py), content
hashing and the on-disk cache (cache.py), and the run-record schema, provenance and atomic JSONL
appends (records.py). Imports only `adcbench.wire` and `adcbench.errors`.
"""
