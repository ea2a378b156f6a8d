"""Layer 3a, data: tasks and where their images come from.

Owns the task contract and registry (task.py), the image-task base with presets (imagetask.py),
image decoding, batch transforms and datasets (images.py), local sources, one module per kind
(sources/), and the Hugging Face hub (hub.py). Imports `core`, `wire` and `errors`; never the
model, the training loop or anything above.
"""
