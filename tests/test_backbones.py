"""Backbone initialisation: scratch, checkpoint PATH round trips, pretrained offline, warm start."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from _taskdata import Tiny, isolated, layout, write_folder  # noqa: F401

from adcbench.data.imagetask import Preset, small_vit
from adcbench.data.task import get_task
from adcbench.errors import AdcbenchError
from adcbench.model.backbones import CheckpointError, build_backbone, read_state_dict


def outputs(model, size=16, chans=3):
    model.eval()
    with torch.no_grad():
        return model(torch.randn(2, chans, size, size, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "imagenette", "fashion-mnist", "food101", "imagenet"])
@pytest.mark.parametrize("which", [0, 1])
def test_every_preset_backbone_builds_and_fits_the_task(name, which):
    preset = list(get_task(name).presets)[which]
    task = get_task(name)(preset=preset)
    model = build_backbone(task, "scratch")[0]
    assert model.num_classes == task.num_classes
    assert outputs(model, task.image_size, task.in_chans).shape == (2, task.num_classes)
    assert len(model.blocks) > task.split_index


def test_paper_preset_is_deit_at_224():
    task = get_task("cifar100")()
    assert task.arch == "deit_tiny_patch16_224" and task.image_size == 224 and task.default_init == "pretrained"
    assert get_task("imagenet")().arch == "deit_small_patch16_224"
    cpu = get_task("cifar10")()
    assert (cpu.image_size, cpu.arch_kwargs["patch_size"]) == (32, 4)
    nette = get_task("imagenette")()
    assert nette.image_size == 112 and nette.arch_kwargs["patch_size"] == 16  # 7x7 tokens


@pytest.mark.parametrize("fmt", ["safetensors", "pt", "wrapped", "dataparallel"])
def test_checkpoint_path_round_trip(tmp_path, fmt):
    task = Tiny()
    torch.manual_seed(1)
    model = build_backbone(task, "scratch")[0]
    state = model.state_dict()
    path = tmp_path / ("w.safetensors" if fmt == "safetensors" else "w.pt")
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif fmt == "pt":
        torch.save(state, path)
    elif fmt == "wrapped":
        torch.save({"model": state, "epoch": 3}, path)
    else:
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    torch.manual_seed(2)
    loaded, info = build_backbone(task, str(path))
    assert torch.equal(outputs(model), outputs(loaded))
    assert info["init"] == "path" and len(info["sha256"]) == 64


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state": Tiny()}, path)  # an arbitrary object, not tensors
    with pytest.raises(CheckpointError, match="refused"):
        read_state_dict(path)


def test_head_is_resized_and_pos_embed_resampled(tmp_path):
    class Wider(Tiny):
        registry_name = "wider"
        num_classes = 7
        presets = {
            "cpu32": Preset(
                image_size=32,
                store_size=32,
                arch="vit",
                arch_kwargs=small_vit(32, 4, embed_dim=32, depth=4, num_heads=2),
                augment="none",
                init="scratch",
            )
        }
        default_preset = "cpu32"

    src = build_backbone(Wider(), "scratch")[0]
    torch.save(src.state_dict(), tmp_path / "w.pt")
    task = Tiny()
    model, info = build_backbone(task, str(tmp_path / "w.pt"))
    assert model.head.out_features == 3 and model.pos_embed.shape[1] == 17
    assert torch.equal(model.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)
    assert info["head"] == "reinitialised" and info["pos_embed"] == "resampled"


def test_mismatched_checkpoint_is_one_line_error(tmp_path):
    torch.save(build_backbone(get_task("digits")())[0].state_dict(), tmp_path / "digits.pt")
    with pytest.raises(CheckpointError, match="does not fit") as exc:
        build_backbone(Tiny(), str(tmp_path / "digits.pt"))[0]
    assert "\n" not in str(exc.value)


def test_unknown_init_and_missing_file():
    with pytest.raises(AdcbenchError, match="expected scratch, pretrained, warmstart"):
        build_backbone(Tiny(), "no/such/file.pt")[0]


def test_pretrained_offline_names_the_alternatives():
    with pytest.raises(AdcbenchError) as exc:
        build_backbone(get_task("cifar10")(preset="paper224"), "pretrained")[0]
    msg = str(exc.value)
    assert "\n" not in msg and "network connection" not in msg
    assert all(s in msg for s in ("scratch", "PATH", "warmstart"))
    with pytest.raises(AdcbenchError, match="custom ViT"):
        build_backbone(Tiny(), "pretrained")[0]


def test_warmstart_produce_reuse_and_record(tmp_path, monkeypatch):
    from adcbench.train import pretrain as pt

    root = write_folder(tmp_path / "ds", layout(n_train=6, n_test=2))
    task = Tiny(data=str(root))
    with pytest.raises(AdcbenchError, match=rf"adcbench pretrain --task tiny --data {root}"):
        build_backbone(task, "warmstart")[0]
    path = pt.pretrain(task, epochs=2, lr=1e-3, seed=0, progress=False)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["recipe"]["epochs"] == 2 and meta["recipe"]["seed"] == 0 and meta["steps"] == 8
    assert meta["versions"]["torch"] == torch.__version__
    assert "image folder" in meta["data"]["source"]
    # The same recipe again: the cached checkpoint, no training.
    monkeypatch.setattr(pt, "evaluate", lambda *a, **k: pytest.fail("trained again"))
    assert pt.pretrain(Tiny(data=str(root)), epochs=2, lr=1e-3, seed=0, progress=False) == path
    fresh = Tiny(data=str(root))
    model, info = build_backbone(fresh, "warmstart")
    from safetensors.torch import load_file

    assert torch.equal(model.state_dict()["head.weight"], load_file(str(path))["head.weight"])
    # the recorded accuracy is the accuracy of the saved weights, re-evaluated here
    monkeypatch.undo()
    assert meta["final_test_accuracy"] == pt.evaluate(model, fresh.splits().test, 4)
    assert info["init"] == "warmstart" and info["recipe"]["epochs"] == 2 and info["path"] == str(path)
    assert info["warmstart"]["final_test_accuracy"] == meta["final_test_accuracy"]
    assert "image folder" in info["warmstart"]["data_source"]


def test_warmstart_key_depends_on_recipe_and_task_params():
    from adcbench.train.pretrain import checkpoint_path, default_recipe

    task = get_task("cifar10")()
    base = checkpoint_path(task)
    assert checkpoint_path(get_task("cifar10")()) == base
    assert checkpoint_path(task, recipe={**default_recipe(task), "lr": 5e-4}) != base
    assert checkpoint_path(get_task("cifar10")(preset="paper224")) != base


def test_sidecar_command_reproduces_the_recipe(tmp_path):
    from adcbench.train.pretrain import pretrain

    root = write_folder(tmp_path / "ds", layout(n_train=2, n_test=1))
    path = pretrain(Tiny(data=str(root)), epochs=1, lr=5e-4, seed=3, max_steps=1, progress=False)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert (
        meta["command"] == f"adcbench pretrain --task tiny --data {root} --lr 0.0005 --seed 3 --max-steps 1 --threads 1"
    )
    assert meta["steps"] == 1


class TinyOther(Tiny):
    """Another 'dataset' with Tiny's backbone but 2 classes: the cross-dataset warm start's target."""

    registry_name = "tinyother"
    num_classes = 2


def test_cross_dataset_warmstart_loads_the_source_tasks_weights(tmp_path, monkeypatch):
    """`--init warmstart:tiny` on another task: the source's backbone weights, a fresh head, the
    source named in the record; a source with another backbone is refused before any data loads."""
    from safetensors.torch import load_file

    from adcbench.data.task import TASKS
    from adcbench.model.backbones import check_init
    from adcbench.train import pretrain as pt

    monkeypatch.setitem(TASKS._entries, "tiny", Tiny)
    root = write_folder(tmp_path / "ds", layout(n_train=6, n_test=2))
    target = TinyOther(data=str(root))
    with pytest.raises(AdcbenchError, match="adcbench pretrain --task tiny"):
        check_init(target, "warmstart:tiny", None)
    path = pt.pretrain(Tiny(data=str(root)), epochs=1, lr=1e-3, seed=0, progress=False)
    check_init(target, "warmstart:tiny", None)
    model, info = build_backbone(target, "warmstart:tiny")
    saved = load_file(str(path))
    state = model.state_dict()
    assert torch.equal(state["blocks.0.attn.qkv.weight"], saved["blocks.0.attn.qkv.weight"])
    assert torch.equal(state["pos_embed"], saved["pos_embed"])
    assert state["head.weight"].shape[0] == 2 and info["head"] == "reinitialised"
    assert info["warmstart"]["task"] == "tiny" and info["init"] == "warmstart:tiny"
    # the run's own warm start is another file: none exists for tinyother
    with pytest.raises(AdcbenchError, match="no warm-start checkpoint for tinyother"):
        check_init(target, "warmstart", None)
    with pytest.raises(AdcbenchError, match="needs a task spec"):
        check_init(target, "warmstart:", None)

    class Wider(TinyOther):
        registry_name = "wider"
        presets = {"cpu16": dataclasses.replace(Tiny.presets["cpu16"], arch_kwargs=small_vit(16, 4, embed_dim=48))}

    with pytest.raises(AdcbenchError, match="same backbone"):
        check_init(Wider(data=str(root)), "warmstart:tiny", None)
    with pytest.raises(AdcbenchError, match="did you mean tiny"):
        check_init(target, "warmstart:tinyy", None)
