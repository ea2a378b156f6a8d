"""`--init` and `--arch` mistakes that need no model, no task and no torch to see: the CLI checks
them first, so a typo is rejected at once; `backbones.check_init` and `vit.create_vit` check the
same with the same messages."""

from __future__ import annotations

import difflib
from collections.abc import Collection
from pathlib import Path

from adcbench.errors import AdcbenchError, UnknownNameError

ALTERNATIVES = "--init scratch, --init PATH (a .safetensors or torch checkpoint) or --init warmstart"


def is_warmstart_init(init: str) -> bool:
    return init == "warmstart" or init.startswith("warmstart:")


def check_init_value(init: str, arch: str | None) -> None:
    """`pretrained` needs a timm model name (`arch`; None: not known yet, left to the model); any
    value other than scratch, pretrained and warmstart[:TASK] is a checkpoint file that must exist."""
    if init == "pretrained":
        if arch == "vit":
            raise AdcbenchError(
                "init=pretrained needs a timm model name with weights (e.g. --arch "
                f"deit_tiny_patch16_224); this backbone is a custom ViT: use {ALTERNATIVES}"
            )
    elif init != "scratch" and not is_warmstart_init(init) and not Path(init).expanduser().is_file():
        raise AdcbenchError(
            f"--init {init!r}: expected scratch, pretrained, warmstart or a "
            "checkpoint file (.safetensors or torch state_dict); no such file"
        )


def check_arch(arch: str, known: Collection[str]) -> None:
    """`arch` is `vit` (the task's own ViT) or one of timm's model names (`known`)."""
    if arch != "vit" and arch not in known:
        close = difflib.get_close_matches(arch, list(known), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(f"unknown timm model {arch!r}{hint} (see timm.list_models('*vit*'))")
