"""Options shared by `run` and `sweep`, and turning them into a RunConfig."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from adcbench.errors import AdcbenchError, DatasetNotFoundError

# Ad-hoc runs never touch the committed study in results/ (git-ignored; see .gitignore).
DEFAULT_OUT = "runs"

SI = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_bytes(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgt]i?)?b?\s*", text.lower())
    if not m:
        raise click.BadParameter(f"{text!r} is not a byte count (e.g. 2e9, 500MB, 1.5GiB)")
    value = float(m.group(1)) * SI[m.group(2) or ""]
    if value < 1:
        raise click.BadParameter(f"{text!r} must be at least 1 byte")
    return int(value)


def _task_spec(spec: str) -> tuple[str, dict[str, str]]:
    from adcbench.core.params import parse_spec

    head, colon, tail = spec.partition(":")
    first, comma, more = tail.partition(",")
    if head.strip() == "hf" and colon and first.strip() and "=" not in first:  # hf:ORG/NAME[,key=value]
        spec = f"hf:dataset={first.strip()}" + (f",{more}" if comma else "")
    (name, params), *rest = parse_spec(spec)
    if rest:
        raise AdcbenchError(f"a task spec has one part, got {spec!r}")
    return name, params


def run_options(f: Callable) -> Callable:
    opts = [
        click.option(
            "--task",
            "task_spec",
            default="digits",
            show_default=True,
            help="Task name, optionally with parameters (`imagenette:preset=cpu112`).",
        ),
        click.option("--data", default=None, help="Local dataset path (folder, archive or saved dataset)."),
        click.option(
            "--dataset", default=None, help="Hub dataset ORG/NAME for --task hf (same as --task hf:ORG/NAME)."
        ),
        click.option("--epochs", type=click.IntRange(1), default=None, help="Epochs [default: the task's]."),
        click.option(
            "--budget-bytes", default=None, help="Stop before training traffic (fwd+bwd) exceeds this (e.g. 2GB)."
        ),
        click.option(
            "--budget-epochs",
            type=click.FloatRange(0, min_open=True),
            default=None,
            help="Byte budget in epochs of Base (`none`, fp32) traffic on this task; the paper's is 10.",
        ),
        click.option(
            "--budget-accounting",
            type=click.Choice(["measured", "nominal"]),
            default="measured",
            show_default=True,
            help="nominal: charge ξ·C_base per step as the paper's code does.",
        ),
        click.option("--max-steps", type=click.IntRange(1), default=None, help="Stop after this many steps."),
        click.option(
            "--batch-size", type=click.IntRange(2), default=None, help="Training batch [default: the task's]."
        ),
        click.option("--split", type=click.IntRange(1), default=None, help="Client blocks l [default: the task's]."),
        click.option(
            "--lr", type=click.FloatRange(0, min_open=True), default=None, help="Adam learning rate, both sides."
        ),
        click.option(
            "--eval-every", type=click.IntRange(0), default=None, help="Steps between evaluations (0: each epoch)."
        ),
        click.option(
            "--eval-policy", type=click.Choice(["raw", "compressed", "both"]), default="both", show_default=True
        ),
        click.option(
            "--history-policy",
            type=click.Choice(["all", "deployed"]),
            default="all",
            show_default=True,
            help="deployed: history evaluations only under the method's deployment policy (the final one: --eval-policy).",
        ),
        click.option(
            "--eval-schedule",
            type=click.Choice(["fixed", "log"]),
            default="fixed",
            show_default=True,
            help="log: also evaluate at log-spaced steps (1, 2, 3, 4, 6, 8, ...) for accuracy at small budgets.",
        ),
        click.option(
            "--eval-samples",
            type=click.IntRange(1),
            default=None,
            help="Evaluate the history on a fixed seeded subset of N samples (smoke runs; recorded).",
        ),
        click.option(
            "--final-eval",
            type=click.Choice(["full", "subset"]),
            default="full",
            show_default=True,
            help="The final evaluation: the full eval split, or the --eval-samples subset.",
        ),
        click.option(
            "--final-eval-samples",
            type=click.IntRange(1),
            default=None,
            help="The final evaluation on this many samples: a fixed subset containing the --eval-samples one.",
        ),
        click.option(
            "--val-fraction",
            type=click.FloatRange(0, 1, max_open=True),
            default=0.0,
            show_default=True,
            help="Carve a validation split from train and evaluate the history on it.",
        ),
        click.option(
            "--init",
            default=None,
            help="scratch | pretrained | warmstart | warmstart:TASK (another task's warm start) | PATH [default: the task's: scratch, or pretrained for paper224].",
        ),
        click.option(
            "--threads",
            type=click.IntRange(1),
            default=None,
            help="torch CPU threads [default: available cores / $ADCBENCH_CONCURRENT_RUNS; 1 on a busy machine].",
        ),
        click.option(
            "--compile/--no-compile",
            default=False,
            show_default=True,
            help="torch.compile the transformer blocks (see docs/benchmarks/speed.md).",
        ),
        click.option(
            "--row-skip/--no-row-skip",
            default=True,
            show_default=True,
            help="Last client block only on the cut rows the method sends (exact; adc, tokenprune).",
        ),
        click.option("--arch", default=None, help="timm ViT name overriding the task's backbone."),
        click.option(
            "--out",
            default=DEFAULT_OUT,
            show_default=True,
            help="Folder for <task>.jsonl records (git-ignored; the committed study lives in results/).",
        ),
        click.option("--device", default="cpu", show_default=True, help="cpu | cuda | cuda:N | mps."),
        click.option(
            "--precision",
            type=click.Choice(["fp32", "bf16", "fp16"]),
            default="fp32",
            show_default=True,
            help="Compute precision: autocast on both halves (fp16 adds a gradient scaler per side).",
        ),
        click.option(
            "--wire-dtype",
            type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
            default="auto",
            show_default=True,
            help="Dtype activations and gradients cross as, where the method leaves it open (auto: the compute dtype).",
        ),
        click.option("--quiet", is_flag=True, help="No progress bar."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def transport_options(f: Callable) -> Callable:
    """How the two roles talk (docs/transport.md): in this process, or two processes over TCP."""
    opts = [
        click.option(
            "--transport",
            type=click.Choice(["loopback", "tcp"]),
            default="loopback",
            show_default=True,
            help="tcp: the server role in a second process on this machine (torch.distributed, gloo).",
        ),
        click.option(
            "--role",
            type=click.Choice(["both", "client"]),
            default="both",
            show_default=True,
            help="client: only the client role, talking to `adcbench serve` (--connect, or MASTER_ADDR/PORT).",
        ),
        click.option("--connect", default=None, metavar="HOST:PORT", help="The server to run as client of."),
        click.option(
            "--timeout",
            type=click.FloatRange(0, min_open=True),
            default=30.0,
            show_default=True,
            help="Seconds to wait for the peer's next message before ending the run.",
        ),
        click.option(
            "--max-message-bytes",
            default="1GiB",
            show_default=True,
            help="Refuse (before allocating) any received message longer than this.",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{text!r} is not HOST:PORT (e.g. 10.0.0.2:29500)", param_hint="--connect")
    return host.strip("[]"), int(port)


def check_inputs(method: str, kw: dict[str, Any]) -> int | None:
    """Names, parameters and the byte budget, from the cached catalog: a typo costs no torch
    import. Returns the budget in bytes."""
    from adcbench.cli.catalog import check, check_data, check_nominal, check_split, task_arch, timm_models
    from adcbench.core.devices import check_device_name
    from adcbench.core.params import check_final_eval

    check("method", method)
    check("task", kw["task_spec"])
    check_split(kw["task_spec"], kw.get("split"), kw.get("arch"))
    from adcbench.model.initspec import check_arch, check_init_value

    if kw.get("arch"):
        check_arch(kw["arch"], timm_models())
    if kw.get("init"):
        check_init_value(kw["init"], kw.get("arch") or task_arch(kw["task_spec"]))
    check_final_eval(kw.get("final_eval_samples"), kw.get("eval_samples"), kw.get("final_eval") or "full")
    if kw.get("data") and not (path := Path(kw["data"]).expanduser()).exists():
        task = kw["task_spec"].split(":")[0]  # as data/sources.resolve_local says it, without the data stack
        raise DatasetNotFoundError(f"{task}: data path {path} does not exist")
    check_device_name(kw["device"])
    check_nominal(method, kw.get("budget_accounting"))
    check_data(kw["task_spec"], kw.get("data"))  # last: it may probe the hub (up to 3 s)
    return parse_bytes(kw["budget_bytes"]) if kw["budget_bytes"] else None


def _config(method: str, seed: int, kw: dict[str, Any]):
    budget = check_inputs(method, kw)
    from adcbench.train.config import parse_device
    from adcbench.train.loop import RunConfig

    task, task_params = _task_spec(kw["task_spec"])
    if kw.get("dataset"):
        if task != "hf":
            raise AdcbenchError(f"--dataset names a hub dataset for --task hf, not for --task {task}")
        task_params = {**task_params, "dataset": kw["dataset"]}
    return RunConfig(
        method=method,
        task=task,
        task_params=task_params,
        data=kw["data"],
        seed=seed,
        epochs=kw["epochs"],
        budget_bytes=budget,
        budget_epochs=kw["budget_epochs"],
        budget_accounting=kw["budget_accounting"],
        max_steps=kw["max_steps"],
        batch_size=kw["batch_size"],
        split=kw["split"],
        lr=kw["lr"],
        eval_every=kw["eval_every"],
        eval_schedule=kw["eval_schedule"],
        eval_policy=kw["eval_policy"],
        history_policy=kw["history_policy"],
        val_fraction=kw["val_fraction"],
        eval_samples=kw["eval_samples"],
        final_eval=kw["final_eval"],
        final_eval_samples=kw["final_eval_samples"],
        init=kw["init"],
        arch=kw["arch"],
        threads=kw["threads"],
        device=str(parse_device(kw["device"])),  # checked here: before any sweep, data or model
        precision=kw["precision"],
        wire_dtype=kw["wire_dtype"],
        compile=kw["compile"],
        row_skip=kw["row_skip"],
        out=kw["out"],
        progress=not kw["quiet"],
    )


def _report(rec: dict[str, Any]) -> None:
    f, b = rec["final"], rec["bytes"]
    acc_c = f"  acc(compressed eval) {f['acc_compressed']:.4f}" if f.get("acc_compressed") is not None else ""
    click.echo(
        f"{rec['task']} {rec['method']} seed={rec['seed']}: acc {f['acc']:.4f}{acc_c}  steps {rec['steps']}  "
        f"sent {b['fwd'] / 1e6:.2f} MB fwd / {b['bwd'] / 1e6:.2f} MB bwd "
        f"({b['per_sample_fwd']:,.0f} / {b['per_sample_bwd']:,.0f} B per sample)"
        + (f"  -> {rec['record_file']}" if rec.get("record_file") else "")
    )
