"""Layer 3b, the model: timm ViTs, their initialisation, and the split into client and server.

Owns backbone creation (vit.py), `--init` handling and checkpoints (backbones.py), the warm-start
checkpoint's key and lookup (warmstart.py; training it is `adcbench.train.pretrain`), and the
split ViT with CLS-attention capture (split.py). Imports `data` (a backbone is built for a task),
`core`, `wire` and `errors`.
"""
