"""The heavy half of benchmarks/authors_step.py (see its docstring): loads the authors' code,
builds both sides, times them and compares what they compute. Imported only after the command
line has been checked, so that a bad argument is answered without importing torch."""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import subprocess
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import speed
import timm
import torch

from adcbench.core.records import cpu_name
from adcbench.methods.adc import kmeans as adc_kmeans
from adcbench.train.loop import train_step
from adcbench.train.runtime import available_cores
from adcbench.transport import Loopback


def _load(root: Path, rel: str) -> ModuleType:
    """`rel` from the authors' checkout, under a private name (their `methods` must not shadow ours)."""
    name = "authors_adc_" + rel.removesuffix(".py").replace("/", "_")
    spec = importlib.util.spec_from_file_location(name, root / rel)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # any failure to import their file is the user's checkout, not ours
        raise ImportError(f"--authors {root}: cannot import {rel}: {type(e).__name__}: {e}") from e
    return module


def load_authors(root: Path) -> SimpleNamespace:
    """Their Base and ADC ("Proposal") model classes and their identity channel, from `root`."""
    proposal = _load(root, "methods/proposal.py")
    return SimpleNamespace(
        base=_load(root, "methods/base.py"),
        proposal=proposal,
        channel=_load(root, "comm/communication.py").Identity,
        kmeans=proposal.kmeans,
    )


def flat(*modules) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for m in modules for p in m.parameters()])


def authors_model(authors: SimpleNamespace, xi: float | None):
    """Their model wrapping `speed.deit()`: Base (xi None) or ADC at desired_compression=xi with
    attention pooling (what every paper run used; their config file's default is `cls`)."""
    vit = speed.deit()
    if xi is None:
        return authors.base.model(vit, authors.channel(), speed.SPLIT)
    return authors.proposal.model(vit, authors.channel(), speed.SPLIT, desired_compression=xi, pooling="attention")


def authors_step(model, batch: int):
    """One training step as their main.py's training_phase takes it per batch (that file needs
    hydra, so it is not imported): forward, soft labels from their compressor, cross-entropy,
    backward, Adam step, zero_grad, the loss (and for Base the accuracy) read back as numbers."""
    x, y = speed.fixed_batch(batch)
    opt = torch.optim.Adam(model.parameters(), lr=speed.LR, eps=1e-8, weight_decay=0)  # their adam.yaml
    ce = torch.nn.CrossEntropyLoss()
    model.train()

    def step() -> float:
        pred = model(x)
        labels = y
        if hasattr(model, "compressor_module"):
            labels = model.compressor_module.compress_labels(y, speed.CLASSES)
        else:  # their Base step also scores the batch (ADC's logs 0): part of their step's time
            (y == pred.argmax(1)).sum().item()
        loss = ce(pred, labels)
        value = loss.detach().cpu().item()
        loss.backward()
        opt.step()
        opt.zero_grad()
        return value

    return step


def adcbench_step(spec: str, batch: int, row_skip: bool = True):
    """(parties, step): `speed.make_step`'s step, with the parties kept to read their stats."""
    p = speed.make_parties(spec, batch, row_skip)
    (x, y), transport = speed.fixed_batch(batch), Loopback()
    return p, lambda: train_step(p, transport, x, y, 0)


def same_init(authors: SimpleNamespace, seed: int = 0) -> list[torch.Tensor]:
    """Make their K-means start from the centroids adcbench's draws (T distinct rows by a randperm
    of the client's generator, seeded 0 as in `speed.make_parties`; one draw per step), through
    their library's `cluster_centers` argument. Returns the generator state before each draw."""
    g = torch.Generator().manual_seed(seed)
    states: list[torch.Tensor] = []

    def kmeans(X, num_clusters, **kw):
        states.append(g.get_state())
        idx = torch.randperm(len(X), generator=g)[:num_clusters]
        return authors.kmeans(X, num_clusters, cluster_centers=X[idx].clone(), **kw)

    authors.proposal.kmeans = kmeans  # the name their wrapper calls; their files are not changed
    return states


def their_cut(model, state: torch.Tensor) -> dict:
    """T, k and the largest cluster of their last step, and whether adcbench's K-means, from the
    same initial centroids, puts every one of their attention vectors in the cluster their library
    did (the same cluster ids, hence the same partition; else how many samples differ)."""
    c = model.compressor_module
    ids, s = c.cluster_ids, c.block.attn.class_token_attention
    g = torch.Generator()
    g.set_state(state)
    assign, _ = adc_kmeans(s.float(), c.n_new_batches, 50, 1e-4, g)
    diff = int((assign != ids.to(assign.dtype)).sum())
    same = "yes" if diff == 0 else f"no ({diff} of {len(ids)} samples)"
    return {"T": c.n_new_batches, "k": c.n_new_tokens, "max": int(torch.bincount(ids).max()), "same": same}


def agreement(authors: SimpleNamespace, spec: str, xi: float | None, batch: int) -> str:
    """One table row: two steps of each side from the same weights and batch."""
    p, ours = adcbench_step(spec, batch)
    model = authors_model(authors, xi)
    if not torch.equal(flat(p.client.net, p.server.net), flat(model.model)):
        raise RuntimeError("the two sides do not start from the same weights")
    states = same_init(authors) if xi is not None else []
    theirs, losses, cut, stats = authors_step(model, batch), [], {}, {}
    try:
        for i in range(2):
            a, b = ours(), theirs()
            losses.append(f"{a:.6f} | {b:.6f} | {abs(a - b):.1e}")
            if i == 0 and xi is not None:
                stats, cut = dict(p.client.stats), their_cut(model, states[0])
    finally:
        authors.proposal.kmeans = authors.kmeans
    if xi is None:
        return f"| `{spec}` vs Base | {' | '.join(losses)} | – | – | – | – | – |"
    asis = authors_step(authors_model(authors, xi), batch)
    np.random.seed(0)  # their init draws from NumPy's global RNG
    return (
        f"| `{spec}` vs ADC | {' | '.join(losses)} | {stats['adc.T']} / {cut['T']} | {stats['adc.k']} / {cut['k']} | "
        f"{stats['adc.max_cluster']} / {cut['max']} | {cut['same']} | {asis():.6f} |"
    )


def timing(authors: SimpleNamespace, spec: str, xi: float | None, args: argparse.Namespace) -> list[str]:
    """Rows: adcbench (row skipping on, and off where the method selects rows) vs their step."""
    np.random.seed(0)
    theirs = authors_step(authors_model(authors, xi), args.batch)
    rows = []
    for row_skip in (True, False) if xi is not None else (True,):
        _, ours = adcbench_step(spec, args.batch, row_skip)
        label = f"`{spec}`" + ("" if xi is None else " (row skipping)" if row_skip else " `--no-row-skip`")
        res = speed.interleave(ours, theirs, args.steps)
        rows.append(speed._row(f"{label} vs their {'Base' if xi is None else 'ADC'}", res))
        print(rows[-1], flush=True)
    return rows


def run(args: argparse.Namespace, authors: SimpleNamespace) -> list[str]:
    cases = ([("none", None)] if not args.no_base else []) + [(f"adc:xi={x:g}", x) for x in args.xi]
    lines = [
        f"Measured {datetime.date.today()} on {cpu_name()} ({available_cores():g} cores available to the process, "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the start), torch {torch.__version__}, "
        f"timm {timm.__version__}, authors' checkout at commit {_commit(args.authors)}: DeiT-Tiny 224 px, random "
        f"init (seed 0), split after block {speed.SPLIT}, B = {args.batch}, Adam, 1 torch thread.",
        f"Command: `python benchmarks/authors_step.py --authors PATH --batch {args.batch} --steps {args.steps} "
        f"--xi {' '.join(f'{x:g}' for x in args.xi)}" + (" --no-base" if args.no_base else "") + "`",
        "",
        f"Step time, {args.steps} interleaved pairs after one warm-up step each (A: adcbench, B: the authors'; "
        "B/A > 1: adcbench is faster):",
        "",
        "| step (A vs B) | A s/step | B s/step | B/A (median) | range |",
        "|---|---|---|---|---|",
    ]
    for spec, xi in cases:
        lines += timing(authors, spec, xi, args)
    lines += [
        "",
        "The same numbers: two steps from the same weights and batch; the authors' K-means started from "
        "adcbench's initial centroids (last column: their code as is, NumPy init seeded 0).",
        "",
        "| step | loss 1: adcbench | loss 1: authors | abs. Δ | loss 2: adcbench | loss 2: authors | abs. Δ "
        "| T (adcbench / authors) | k | largest cluster | same partition | authors as is: loss 1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for spec, xi in cases:
        lines.append(agreement(authors, spec, xi, args.batch))
        print(lines[-1], flush=True)
    return lines


def _commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    except OSError:
        return "unknown (no git)"
    return out.stdout.strip() or "unknown (not a git work tree)"
