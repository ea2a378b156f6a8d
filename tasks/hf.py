"""Any Hugging Face image-classification dataset: `--task hf:ORG/NAME` (or `hf:dataset=ORG/NAME`).

The image column is the dataset's `Image` feature and the label column its `ClassLabel` (class
names from it) or a column called `label`, unless `image=` / `label=` name them. Splits:
`train_split` (default `train`) and `test_split` (default `test`, else `validation`). `--data DIR`
reads a `save_to_disk` DatasetDict instead of the hub (same column and split options), or any
layout `imagefolder` reads. Options `preset`, `size`, `patch` are `imagefolder`'s. Gated datasets
need `HF_TOKEN`; an unreachable hub fails in seconds with the alternatives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adcbench.core.params import Param
from adcbench.data.images import DataFormatError
from adcbench.data.sources import HFSource, Source
from adcbench.data.task import register_task
from adcbench.errors import DatasetNotFoundError
from adcbench.tasks.imagefolder import ImageFolder

_OPT = dict(optional=True)


@register_task("hf")
class HFTask(ImageFolder):
    description = "a Hugging Face image dataset: hf:ORG/NAME (image and label columns detected or given)"
    source = "hub dataset ORG/NAME, or --data: a save_to_disk DatasetDict"
    data_env = None
    data_help = "a save_to_disk DatasetDict"
    presets = dict(ImageFolder.presets)
    default_preset = "small"
    params = (
        Param("dataset", str, None, "hub dataset id ORG/NAME", **_OPT),  # type: ignore[arg-type]
        Param("config", str, None, "hub dataset configuration", **_OPT),  # type: ignore[arg-type]
        Param("image", str, None, "image column (default: the Image feature)", **_OPT),  # type: ignore[arg-type]
        Param("label", str, None, "label column (default: the ClassLabel, or `label`)", **_OPT),  # type: ignore[arg-type]
        Param("train_split", str, "train", "split trained on"),
        Param("test_split", str, None, "split evaluated on (default: test, else validation)", **_OPT),  # type: ignore[arg-type]
        *(p for p in ImageFolder.params if p.name in ("size", "patch")),
    )

    @classmethod
    def data_lookup(cls) -> dict[str, Any] | None:
        return None  # --data, or the hub dataset that --dataset names: decided at load time

    def _find_source(self) -> Source:
        c = self.config
        if self.data:
            p = Path(self.data).expanduser()
            if (p / "dataset_dict.json").is_file():
                return self._disk(p)
            return super()._find_source()
        if not c["dataset"]:
            raise DatasetNotFoundError(
                "hf: name the dataset (--task hf:ORG/NAME or hf:dataset=ORG/NAME) or pass --data a save_to_disk folder"
            )
        from adcbench.data.hub import load_hub_split

        miss = f"hf: hub dataset {c['dataset']} is not reachable here (pass --data a save_to_disk copy)"
        train = load_hub_split(c["dataset"], c["config"], c["train_split"], miss)
        if c["test_split"]:
            test = load_hub_split(c["dataset"], c["config"], c["test_split"], miss)
        else:
            try:
                test = load_hub_split(c["dataset"], c["config"], "test", miss)
            except DatasetNotFoundError:
                test = load_hub_split(c["dataset"], c["config"], "validation", miss)
        identity = ["hub", c["dataset"], c["config"]]
        return HFSource({"train": train, "test": test}, identity, f"hub {c['dataset']}", c["image"], c["label"])

    def _disk(self, path: Path) -> Source:
        import datasets

        c = self.config
        loaded = datasets.load_from_disk(str(path))
        test_name = c["test_split"] or next((s for s in ("test", "validation") if s in loaded), "test")
        for name in (c["train_split"], test_name):
            if name not in loaded:
                raise DataFormatError(f"hf: {path} has no split {name!r} (splits: {', '.join(loaded)})")
        splits = {"train": loaded[c["train_split"]], "test": loaded[test_name]}
        return HFSource(splits, ["disk", str(path.resolve())], f"save_to_disk dataset {path}", c["image"], c["label"])
