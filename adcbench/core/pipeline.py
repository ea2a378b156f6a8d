"""Composition of stages (`A+B+...`) into one compression pipeline, defined once for all methods.

`B` applies to what `A` sends: A's float `rest` is B's input. A chain that does not end in a
terminal stage gets the float32 terminal (`float`) appended. Fields are namespaced by stage
position (`0.z`, `1.codes`), labels travel as `y` unless a stage sends them itself.
Byte-level lossless stages (`zstd`, `zlib`) wrap the encoded message when registered as
`LosslessStage`s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from adcbench.core.method import (
    METHODS,
    Context,
    Cut,
    Method,
    all_finite,
    label_field,
    read_labels,
)
from adcbench.core.params import parse_spec, split_generic_xi
from adcbench.core.rate import analytic_step_bytes, map_xi
from adcbench.errors import ParamError, WireFormatError
from adcbench.wire import Category, Message

DEFAULT_TERMINAL = "float"


class LosslessStage:
    """A byte-level stage applied to the whole encoded message (both directions).
    Subclasses implement `compress`/`decompress`; register with `@register_method`."""

    registry_name: str
    description = ""
    params: tuple = ()
    lossless = True
    deployment_policy = "compressed"  # lossless: identical either way; the coded bytes are what is sent
    same_as = ""

    def __init__(self, **params: Any) -> None:
        from adcbench.core.params import resolve_params

        self.config = resolve_params(self.params, params, f"method {self.registry_name}")

    def compress(self, data: bytes) -> bytes:
        raise NotImplementedError  # abstract

    def decompress(self, data: bytes) -> bytes:
        raise NotImplementedError  # abstract

    @property
    def spec(self) -> str:
        from adcbench.core.params import format_spec

        return format_spec(self.registry_name, self.config, {p.name: p.default for p in self.params})


def build_stage(name: str, params: Mapping[str, Any]) -> Method | LosslessStage:
    """One stage. `xi=` on a lossy method without a native `xi` is the generic rate knob: it is
    kept as the stage's target and mapped to the native knob when the pipeline sees the cut."""
    cls = METHODS.get(name)
    rate, lossless = getattr(cls, "rate_param", None), getattr(cls, "lossless", False)
    rest, target = split_generic_xi(name, params, cls.params, rate, lossless)
    if target is None:
        return cls(**rest)
    stage = cls(**rest)
    stage.target_xi, stage.given = target, rest
    return stage


class Pipeline:
    """A parsed, validated method spec: lossy stages, a terminal stage, lossless wrappers."""

    def __init__(self, stages: Iterable[Method | LosslessStage], wire_dtype: str | None = None) -> None:
        """`wire_dtype` (float32 | bfloat16 | float16): the dtype of the implicit float terminal, where
        the chain ends in one that the spec leaves at its default; `wire_dtype_applied` says if it did."""
        stages = list(stages)
        if not stages:
            raise ParamError("a method needs at least one stage")
        lossy = [s for s in stages if not getattr(s, "lossless", False)]
        lossless = [s for s in stages if getattr(s, "lossless", False)]
        if lossless and stages[-len(lossless) :] != lossless:
            raise ParamError("lossless stages (zstd, zlib) must come last in a method spec")
        if not lossy:
            raise ParamError("a method needs a lossy or identity stage before lossless ones (e.g. none+zstd)")
        for i, s in enumerate(lossy[:-1]):
            if s.terminal:  # type: ignore[union-attr]
                nxt = lossy[i + 1].registry_name
                raise ParamError(
                    f"{s.registry_name} encodes its input completely and must be the last lossy stage "
                    f"(it is followed by {nxt})"
                )
        for s in lossy[1:]:
            if s.needs_attention:  # type: ignore[union-attr]
                raise ParamError(f"{s.registry_name} needs the client's attention scores and must come first")
        self.user_spec = "+".join(_stage_spec(s) for s in stages)
        for s in lossy[:-1]:
            if s.default_terminal() != (DEFAULT_TERMINAL, {}):  # type: ignore[union-attr]
                raise ParamError(
                    f"{s.spec}: its value dtype applies only when it is the last lossy stage; "
                    f"set the dtype on the stage that follows it instead"
                )
        self.wire_dtype_applied = False
        if not lossy[-1].terminal:  # type: ignore[union-attr]
            name, params = lossy[-1].default_terminal()  # type: ignore[union-attr]
            if wire_dtype is not None and (name, params) == (DEFAULT_TERMINAL, {}):
                params, self.wire_dtype_applied = {"dtype": wire_dtype}, True
            lossy.append(METHODS.get(name)(**params))
        self.stages: list[Method] = lossy  # type: ignore[assignment]
        self.lossless: list[LosslessStage] = lossless  # type: ignore[assignment]
        self.cut: Cut | None = None

    @classmethod
    def from_spec(cls, spec: str, wire_dtype: str | None = None) -> Pipeline:
        return cls((build_stage(name, params) for name, params in parse_spec(spec)), wire_dtype)

    @property
    def spec(self) -> str:
        """Canonical spec, defaults omitted (the implicit float terminal is not shown)."""
        return self.user_spec

    @property
    def deployment_policy(self) -> str:
        """The evaluation policy the chain is deployed with (its stages' `deployment_policy`):
        compressed as soon as one stage is, since a learned codec's server never sees raw activations."""
        return "compressed" if any(s.deployment_policy == "compressed" for s in self.stages) else "raw"

    @property
    def needs_attention(self) -> bool:
        return self.stages[0].needs_attention

    @property
    def selects_rows(self) -> bool:
        """True when the first stage declares the cut rows it reads (`Method.select_rows`)."""
        return type(self.stages[0]).select_rows is not Method.select_rows

    def select_rows(self, ctx: Context) -> torch.Tensor | None:
        """The rows of the cut the chain reads: the first stage's, since later stages see only
        what it sends."""
        return self.stages[0].select_rows(ctx)

    def nominal_ratio(self) -> float | None:
        """Product of the stages' nominal ratios (None if any stage has none)."""
        ratio = 1.0
        for s in self.stages:
            r = s.nominal_ratio()
            if r is None:
                return None
            ratio *= r
        return ratio

    def resolved(self) -> list[dict[str, Any]]:
        out = []
        stages: list[Method | LosslessStage] = [*self.stages, *self.lossless]
        for s in stages:
            entry: dict[str, Any] = {"name": s.registry_name, "params": dict(s.config)}
            xi = getattr(s, "target_xi", None)
            if xi is not None:
                entry["xi_target"] = xi
            out.append(entry)
        return out

    def achieved_xi(self, batch: int | None = None) -> float | None:
        """Training bytes per step (both directions, from the analytic sizes) over `none`'s at
        the same cut: the wire ratio a generic `xi=` aims at. None before setup."""
        if self.cut is None:
            return None
        batch = batch or self.cut.batch_size
        return sum(analytic_step_bytes(self.stages, self.cut, batch)) / sum(
            analytic_step_bytes(_none_stages(), self.cut, batch)
        )

    def setup(self, cut: Cut) -> None:
        self.cut = cut
        for i, s in enumerate(self.stages):
            if getattr(s, "target_xi", None) is not None:
                self.stages[i] = map_xi(self.stages, i, cut, _none_stages())
        shape: tuple[int, ...] = (cut.tokens, cut.dim)
        for s in self.stages:
            s.setup(cut, shape)
            if not s.terminal:
                shape = s.rest_shape(shape, training=True)

    def modules(self, side: str) -> list[nn.Module]:
        attr = "client_module" if side == "client" else "server_module"
        return [m for s in self.stages if (m := getattr(s, attr)) is not None]

    def train(self, mode: bool) -> None:
        for side in ("client", "server"):
            for m in self.modules(side):
                m.train(mode)

    # -- bytes <-> Message (lossless wrappers applied here, once for every method) -------------
    def pack(self, msg: Message) -> bytes:
        data = msg.encode()
        for lz in self.lossless:
            data = lz.compress(data)
        return data

    def unpack(self, data: bytes) -> Message:
        """Bytes -> Message, with every field's name and category checked against the stages'
        declarations and every float field checked finite (WireFormatError otherwise)."""
        for lz in reversed(self.lossless):
            data = lz.decompress(data)
        msg = Message.decode(data)
        _check_fields(msg, self.stages)
        return msg

    @property
    def exact_size(self) -> bool:
        """True when `analytic_bytes` is the exact payload + side + labels (else an upper bound)."""
        return all(s.exact_size for s in self.stages)

    # -- client ---------------------------------------------------------------------------------
    def encode_forward(self, h: torch.Tensor, ctx: Context) -> tuple[Message, torch.Tensor]:
        """Returns the forward message and the client tensor whose gradient comes back."""
        msg = Message()
        x = h
        for i, stage in enumerate(self.stages):
            fields, rest = stage.encode_forward(x, ctx)
            for name, f in fields.items():
                msg[f"{i}.{name}"] = f
            if stage.terminal:
                break
            assert rest is not None, f"{stage.registry_name} returned no rest"
            x = rest
        if not ctx.labels_sent and ctx.labels is not None:
            msg["y"] = label_field(ctx.labels, ctx.cut.num_classes)
        return msg, x

    def decode_backward(self, msg: Message, ctx: Context) -> torch.Tensor:
        last = len(self.stages) - 1
        if "y" in msg:
            raise WireFormatError("a gradient message carries no labels")
        grad = self.stages[last].decode_backward(_local(msg, last), ctx)
        if not isinstance(grad, torch.Tensor) or not grad.dtype.is_floating_point or not all_finite(grad):
            raise WireFormatError(f"{self.stages[last].registry_name}: gradient is not a finite float tensor")
        return grad

    # -- server ---------------------------------------------------------------------------------
    def input_shapes(self, training: bool) -> list[tuple[int, ...]]:
        """Per-sample input shape of every lossy stage (the first one's is n×d)."""
        assert self.cut is not None, "setup() first"
        shapes: list[tuple[int, ...]] = [(self.cut.tokens, self.cut.dim)]
        for s in self.stages[:-1]:
            shapes.append(s.rest_shape(shapes[-1], training))
        return shapes

    def decode_forward(self, msg: Message, ctx: Context) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Returns (server input, the leaf whose gradient is sent back, targets).
        Every stage's output is checked against the shape the spec implies, so a well-formed
        message with wrong shapes is a WireFormatError, not an error deep inside the server."""
        last = len(self.stages) - 1
        shapes = self.input_shapes(ctx.training)
        leaf = self.stages[last].decode_forward(_local(msg, last), None, ctx)
        _check_shape(leaf, shapes[last], self.stages[last])
        _check_finite(leaf, self.stages[last])
        leaf = leaf.detach().float().requires_grad_(ctx.training)
        x = leaf
        for i in range(last - 1, -1, -1):
            x = self.stages[i].decode_forward(_local(msg, i), x, ctx)
            _check_shape(x, self.stages[i].output_shape(shapes[i], ctx.training), self.stages[i])
        # e.g. finite codes times a huge scale, or an overflowing decoder; a stage that only moves
        # decoded values around (`keeps_finite`, e.g. topk's scatter) cannot make them non-finite.
        if x is not leaf and not all(getattr(s, "keeps_finite", False) for s in self.stages[:last]):
            _check_finite(x, self.stages[0])
        targets = ctx.targets
        if "y" in msg and (targets is not None or not ctx.training):
            raise WireFormatError("labels sent twice, or with an evaluation message")
        if targets is None and "y" in msg:
            targets = read_labels({"y": msg["y"]}, "y", "labels", x.shape[0], ctx.cut.num_classes)
        return x, leaf, targets

    def encode_backward(self, grad: torch.Tensor, ctx: Context) -> Message:
        last = len(self.stages) - 1
        msg = Message()
        for name, f in self.stages[last].encode_backward(grad, ctx).items():
            msg[f"{last}.{name}"] = f
        return msg

    # -- analytic size (information bytes, no framing) -------------------------------------------
    def analytic_bytes(self, batch: int, training: bool = True, labels: bool = True) -> tuple[int, int]:
        """(forward, backward) bytes of one step with `batch` samples, from the stages' formulas."""
        assert self.cut is not None, "setup() first"
        return analytic_step_bytes(self.stages, self.cut, batch, training, labels)


def _none_stages() -> list[Method]:
    return Pipeline.from_spec("none").stages


def _stage_spec(s: Method | LosslessStage) -> str:
    """A stage's spec; a generic `xi=` shows as given (the native value it maps to is in
    `resolved()`), so records and leaderboards name the rate the user asked for."""
    xi = getattr(s, "target_xi", None)
    if xi is None:
        return s.spec
    name, _, rest = s.spec.partition(":")
    return f"{name}:xi={xi:g}" + (f",{rest}" if rest else "")


def _check_shape(x: torch.Tensor, shape: tuple[int, ...], stage: Method) -> None:
    if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != tuple(shape) or not x.dtype.is_floating_point:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise WireFormatError(
            f"{stage.registry_name}: decoded a tensor of shape {got}, expected (batch, {', '.join(map(str, shape))})"
        )
    if x.shape[0] == 0:
        raise WireFormatError(f"{stage.registry_name}: decoded an empty batch")


def _check_finite(x: torch.Tensor, stage: Method) -> None:
    if not all_finite(x.detach()):
        raise WireFormatError(f"{stage.registry_name}: decoded non-finite values")


def _check_fields(msg: Message, stages: list[Method]) -> None:
    """Names and categories as the stages declare them (values: the stages' own checks, via
    `expect_tensor`, and the finiteness of every decoded output)."""
    for name, f in msg.fields.items():
        index, _, local = name.partition(".")
        if name == "y":
            expected = Category.LABELS
        elif index.isdigit() and int(index) < len(stages) and str(int(index)) == index:
            declared = stages[int(index)].field_categories
            if declared is None:  # undeclared stage: name and category unchecked
                expected = f.category
            elif local not in declared:
                raise WireFormatError(f"{stages[int(index)].registry_name} sends no field {local!r}")
            else:
                expected = declared[local]
        else:
            raise WireFormatError(f"unexpected field {name!r} for this method")
        if f.category != expected:
            raise WireFormatError(
                f"field {name!r} is marked {f.category.name.lower()}, the method sends it as {expected.name.lower()}"
            )


def _local(msg: Message, index: int) -> dict[str, Any]:
    prefix = f"{index}."
    return {k[len(prefix) :]: f.value for k, f in msg.fields.items() if k.startswith(prefix)}
