"""Backbones: a timm VisionTransformer for a task, initialised one of four ways.

- `scratch`: random init (timm's).
- `pretrained`: timm hub weights for a named model (e.g. `deit_tiny_patch16_224`); the head is
  re-created for the task's classes and position embeddings are resampled to the task's size.
- `PATH`: a local checkpoint — `.safetensors`, or a torch checkpoint read with
  `torch.load(weights_only=True)` (pickled objects are refused). A head of another size is
  re-initialised for the task's classes; position embeddings are resampled.
- `warmstart`: the checkpoint `adcbench pretrain --task NAME` trained and cached for this task,
  backbone and default recipe (see `adcbench.pretrain`); `warmstart:SPEC` the one of task SPEC
  (cross-dataset transfer; the backbone must match).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from adcbench.data.task import Task
from adcbench.errors import AdcbenchError
from adcbench.model.initspec import ALTERNATIVES, check_init_value, is_warmstart_init
from adcbench.model.vit import create_vit
from adcbench.model.warmstart import find_warmstart, warmstart_source

INIT_KEYWORDS = ("scratch", "pretrained", "warmstart")
HEAD_KEYS = ("head.weight", "head.bias")


class CheckpointError(AdcbenchError, ValueError):
    """A checkpoint that cannot be read or does not fit the backbone."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` file or a weights-only torch checkpoint (optionally wrapped in
    `{"model": ...}` / `{"state_dict": ...}`, with DataParallel's `module.` prefix)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, wrong format: a user problem, not a crash
        if type(exc).__name__ == "UnpicklingError":  # weights_only refused a pickled object
            raise CheckpointError(
                f"checkpoint {path} holds pickled objects beyond tensors; refused (weights_only); "
                "save a state_dict or .safetensors"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    for key in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} is not a state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> dict[str, Any]:
    """Load `state` into a timm ViT, resizing head and position embeddings; strict otherwise."""
    from timm.layers import resample_abs_pos_embed

    own = model.state_dict()
    state = dict(state)
    notes: dict[str, Any] = {}
    if any(k in state and state[k].shape != own[k].shape for k in HEAD_KEYS if k in own):
        for k in HEAD_KEYS:
            state.pop(k, None)
        notes["head"] = "reinitialised"  # a different class count: a fresh head for this task
    pe = state.get("pos_embed")
    if pe is not None and "pos_embed" in own and pe.shape != own["pos_embed"].shape:
        prefix = 0 if getattr(model, "no_embed_class", False) else getattr(model, "num_prefix_tokens", 1)
        try:
            state["pos_embed"] = resample_abs_pos_embed(
                pe, new_size=list(model.patch_embed.grid_size), num_prefix_tokens=prefix
            )
        except Exception:
            raise CheckpointError(
                f"{where}: position embeddings {tuple(pe.shape)} cannot be resampled to {tuple(own['pos_embed'].shape)}"
            ) from None
        notes["pos_embed"] = "resampled"
    bad = [k for k in state if k in own and state[k].shape != own[k].shape]
    missing = [k for k in own if k not in state and not (k in HEAD_KEYS and "head" in notes)]
    unexpected = [k for k in state if k not in own]
    if bad or missing or unexpected:
        parts = []
        if bad:
            parts.append(f"shape mismatch {bad[0]} {tuple(state[bad[0]].shape)} vs {tuple(own[bad[0]].shape)}")
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise CheckpointError(f"{where} does not fit this backbone: " + "; ".join(parts))
    model.load_state_dict(state, strict=False)
    return notes


def _pretrained(arch: str, num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    import timm

    from adcbench.data.hub import hub_offline, hub_reachable, one_line, sync_offline

    if arch == "vit":
        raise AdcbenchError(
            "init=pretrained needs a timm model name with weights (e.g. --arch "
            f"deit_tiny_patch16_224); this backbone is a custom ViT: use {ALTERNATIVES}"
        )
    try:
        has_weights = timm.is_model_pretrained(arch) or arch in timm.list_pretrained()
    except Exception:  # unknown names raise inside timm on some versions
        has_weights = False
    if not has_weights:
        raise AdcbenchError(f"init=pretrained: timm has no pretrained weights for {arch!r}; use {ALTERNATIVES}")
    unreachable = (
        f"init=pretrained: cannot fetch {arch} weights (the Hugging Face hub is "
        f"unreachable and they are not in the local cache); use {ALTERNATIVES}"
    )
    if not hub_offline() and not hub_reachable():
        raise AdcbenchError(unreachable)
    sync_offline()
    try:
        return timm.create_model(arch, pretrained=True, num_classes=num_classes, **kwargs)
    except Exception as exc:  # offline cache miss, HTTP errors: one line with the alternatives
        raise AdcbenchError(f"{unreachable} [{one_line(exc)}]") from None


def build_backbone(task: Task, init: str = "scratch", arch: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The task's model (or `arch`) with `init` applied; also a JSON-able record of the init."""
    from timm.models.vision_transformer import VisionTransformer

    name = arch or task.arch
    kwargs = task.model_kwargs(arch)
    info: dict[str, Any] = {"init": init, "arch": name}
    if init == "pretrained":
        model = _pretrained(name, task.num_classes, kwargs)
        if not isinstance(model, VisionTransformer):
            raise AdcbenchError(f"{name!r} is not a timm VisionTransformer; adcbench splits ViTs only")
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        info["weights"] = cfg.get("hf_hub_id") or cfg.get("tag") or name
        return model, info
    model = create_vit(name, task.num_classes, "scratch", **kwargs)
    if init == "scratch":
        return model, info
    if is_warmstart_init(init):
        source = warmstart_source(task, init, arch)
        path, meta = find_warmstart(source, arch)
        # The recipe, and how the warm start turned out, travel into the run record.
        info.update(
            path=str(path),
            sha256=meta.get("sha256"),
            recipe=meta.get("recipe"),
            warmstart={
                k: meta.get(k)
                for k in (
                    "command",
                    "threads",
                    "final_test_accuracy",
                    "final_val_accuracy",
                    "steps",
                    "created",
                    "versions",
                )
            },
        )
        info["warmstart"]["git_commit"] = (meta.get("provenance") or {}).get("git_commit")
        info["warmstart"]["data_source"] = (meta.get("data") or {}).get("source")
        info["warmstart"]["task"] = meta.get("model", {}).get("task", source.registry_name)
    else:
        path = Path(init).expanduser()
        if not path.is_file():
            raise AdcbenchError(
                f"--init {init!r}: expected scratch, pretrained, warmstart or a "
                "checkpoint file (.safetensors or torch state_dict); no such file"
            )
        info.update(init="path", path=str(path.resolve()), sha256=file_sha256(path))
    info.update(load_weights(model, read_state_dict(path), f"checkpoint {path}"))
    return model, info


def check_init(task: Task, init: str, arch: str | None) -> None:
    """`--init` checked before any data loads: the warm start exists (and is complete), a
    checkpoint path is a file, `pretrained` names a timm model. Loading comes later."""
    if is_warmstart_init(init):
        find_warmstart(warmstart_source(task, init, arch), arch)
    else:
        check_init_value(init, arch or task.arch)


def probe_cut(task: Task, arch: str | None, split: int) -> tuple[int, int, int, int]:
    """(depth, n tokens, d width, prefix tokens) at block `split` of the task's backbone, from a
    weightless skeleton on the meta device: options are checked against the model before any
    data or weights load. Raises AdcbenchError for a split outside 1..depth-1."""
    from adcbench.model.split import cut_shape, split_vit

    with torch.device("meta"):
        vit = create_vit(arch or task.arch, task.num_classes, "scratch", **task.model_kwargs(arch))
    depth = len(vit.blocks)
    client, _ = split_vit(vit, split)
    n, d = cut_shape(client, task.image_size, task.in_chans)
    return depth, n, d, int(client.num_prefix_tokens)
