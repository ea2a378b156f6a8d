"""The method contract: a compression *stage* between the client's and the server's halves.

A method is a chain of stages (`adc+quant:bits=8`). Each stage maps a float tensor `x` to
message fields plus, usually, a smaller float tensor `rest` that the next stage encodes; the
chain always ends in a *terminal* stage that encodes its input completely (float32 by default,
or a quantizer). On the server each stage rebuilds its output from its fields and the next
stage's output, so the server runs on decoded tensors only.

Gradients: the server's gradient with respect to the terminal stage's decoded output is encoded by
that terminal stage (`encode_backward`), decoded on the client (`decode_backward`) and pushed into
the client's graph at the tensor the terminal stage encoded. Every other stage's backward is plain
autograd through its (client and server) transforms: ADC's merge-and-gather spreads g_j/|c_j| to
the members of cluster j, top-k scatters onto its support, an autoencoder trains, and so on.

Methods never see the transport: they produce and consume `Field`s; the pipeline serializes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from adcbench.core.params import Param, format_spec, missing_modules, resolve_params, unavailable_text
from adcbench.core.registry import Registry
from adcbench.errors import ParamError, WireFormatError
from adcbench.wire import Category, Field, Message, bits_for, packed_nbytes

METHODS: Registry[type[Method]] = Registry("method", "adcbench.methods", "adcbench.methods")
register_method = METHODS.register

Fields = dict[str, Field]
Decoded = Mapping[str, Any]  # a stage's decoded fields: name -> tensor or bytes


@dataclasses.dataclass(frozen=True)
class Cut:
    """The shape of what crosses the cut: B×n×d activations for a C-class task."""

    tokens: int  # n, including prefix (CLS) tokens
    dim: int  # d
    num_classes: int  # C
    batch_size: int  # B used for training
    prefix_tokens: int = 1


@dataclasses.dataclass
class Context:
    """What one side knows during one step. The client fills `labels` and `attention`; a stage
    that sends labels itself sets `labels_sent` (client) and `targets` (server)."""

    training: bool
    cut: Cut
    step: int = 0
    generator: torch.Generator | None = None
    labels: torch.Tensor | None = None  # client: (B,) int64
    attention: torch.Tensor | None = None  # client: (B, n) head-averaged CLS attention
    labels_sent: bool = False
    targets: torch.Tensor | None = None  # server: (B',) int64 or (B', C) soft targets
    stats: dict[str, float] = dataclasses.field(default_factory=dict)
    plan: Any = None  # client: what a stage's `select_rows` worked out, reused by its encode_forward


class Method:
    """Base class of a compression stage. Register subclasses with `@register_method(name)`."""

    registry_name: ClassVar[str]
    description: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    needs_attention: ClassVar[bool] = False  # wants ctx.attention (first stage only)
    terminal: ClassVar[bool] = False  # encodes its input completely; must be the last stage
    # What `eval_policy=compressed` does for this stage, in words (documented in `methods`).
    eval_compressed: ClassVar[str] = "same as training"
    # Which evaluation policy is this method's deployed accuracy, as the paper's code evaluates
    # it: "raw" (compression is a training-time cost; inference sends uncompressed activations)
    # or "compressed" (the codec is part of the model, e.g. a learned autoencoder). Leaderboards
    # read it to choose the headline accuracy.
    deployment_policy: ClassVar[str] = "raw"
    # Another spec that is the same algorithm at the same rate (said in `adcbench methods`).
    same_as: ClassVar[str] = ""
    # Set on a stage built with the generic `xi=` (core.pipeline.build_stage): the target wire
    # ratio, and the other parameters given, from which the native setting is derived at setup.
    target_xi: float | None = None
    given: dict[str, Any] | None = None
    # The knob that sets the rate and 2-3 values from mild to tight (bytes must strictly fall
    # along them); the contract tests and the benchmark sweep it. None: no rate knob.
    rate_param: ClassVar[tuple[str, tuple[Any, ...]] | None] = None
    # True: the knob sets the rate through training (a rate-distortion weight), so bytes at
    # initialization do not depend on it; the contract tests skip the bytes-fall check.
    rate_trained: ClassVar[bool] = False
    # The category of every field this stage may send, by name (without the stage prefix). The
    # receiving pipeline rejects a field whose name is not declared or whose category on the wire
    # differs, so the byte breakdown of an accepted message is the method's, not the sender's.
    # None: not declared (unchecked; the contract tests require a declaration).
    field_categories: ClassVar[Mapping[str, Category] | None] = None
    # True: payload + side + labels on the wire == analytic_forward/backward exactly. False: the
    # stage's size depends on the data (entropy-coded positions) and the analytic size is a bound.
    exact_size: ClassVar[bool] = True
    # A variable-rate stage (an entropy coder) sets exact_size = False: its analytic size is an
    # upper bound the wire never exceeds, and it may record the measured and estimated bytes in
    # ctx.stats. Optional modules it needs (import names) and the command that installs them:
    # without them it is listed as unavailable and building it raises ParamError with that command.
    requires: ClassVar[tuple[str, ...]] = ()
    install: ClassVar[str] = ""

    @classmethod
    def missing(cls) -> list[str]:
        """The optional modules in `requires` that are not installed (checked without importing)."""
        return missing_modules(cls.requires)

    def __init__(self, **params: Any) -> None:
        if missing := self.missing():
            raise ParamError(unavailable_text(self.registry_name, missing, self.install))
        self.config: dict[str, Any] = resolve_params(self.params, params, f"method {self.registry_name}")
        self.client_module: nn.Module | None = None  # trained with the client's optimizer
        self.server_module: nn.Module | None = None  # trained with the server's optimizer
        self.cut: Cut | None = None

    def setup(self, cut: Cut, in_shape: tuple[int, ...]) -> None:
        """Build modules for training inputs of per-sample shape `in_shape` (no batch dim, as seen
        by this stage). Raise ParamError for parameters that do not fit the shape."""
        self.cut = cut

    @property
    def spec(self) -> str:
        defaults = {p.name: p.default for p in self.params}
        return format_spec(self.registry_name, self.config, defaults)

    # -- client -> server ---------------------------------------------------------------------
    def encode_forward(self, x: torch.Tensor, ctx: Context) -> tuple[Fields, torch.Tensor | None]:
        """Client: fields to send and `rest` (a float tensor in x's autograd graph, or None)."""
        raise NotImplementedError  # abstract

    def decode_forward(self, fields: Decoded, rest: torch.Tensor | None, ctx: Context) -> torch.Tensor:
        """Server: this stage's output from its fields and the next stage's output `rest`."""
        raise NotImplementedError  # abstract

    # -- server -> client (terminal stages only) ------------------------------------------------
    def encode_backward(self, grad: torch.Tensor, ctx: Context) -> Fields:
        raise NotImplementedError  # abstract: terminal stages only

    def decode_backward(self, fields: Decoded, ctx: Context) -> torch.Tensor:
        raise NotImplementedError  # abstract: terminal stages only

    # -- analytic size -------------------------------------------------------------------------
    def analytic_forward(self, batch: int, in_shape: tuple[int, ...], training: bool) -> tuple[int, int]:
        """(bytes of this stage's own fields, batch size of `rest`) for a forward message with
        `batch` inputs of per-sample shape `in_shape` -- from the method's formula, not from an
        encoding. The wire holds these bytes plus framing."""
        raise NotImplementedError  # abstract

    def analytic_backward(self, batch: int, in_shape: tuple[int, ...]) -> int:
        raise NotImplementedError  # abstract: terminal stages only

    def nominal_ratio(self) -> float | None:
        """The compression ratio the paper's code would *charge* for this stage (its nominal ξ),
        or None where the paper has none. Used only for the paper-faithful accounting mode; the
        benchmark's own numbers are measured bytes."""
        return None

    def sends_labels(self, training: bool) -> bool:
        """True if this stage puts the labels in the message itself (else the pipeline sends `y`)."""
        return False

    def rest_shape(self, in_shape: tuple[int, ...], training: bool) -> tuple[int, ...]:
        """Per-sample shape of `rest` for inputs of `in_shape` (default: unchanged)."""
        return in_shape

    def output_shape(self, in_shape: tuple[int, ...], training: bool) -> tuple[int, ...]:
        """Per-sample shape of what the server-side decode returns (default: the input's, i.e.
        the stage reconstructs its input; token selection returns its k kept tokens instead)."""
        return in_shape

    def select_rows(self, ctx: Context) -> torch.Tensor | None:
        """Client, first stage only: the rows of the cut this stage's `encode_forward` will read,
        declared from `ctx.attention` before the last client block finishes -- a (B, m) int64
        tensor of distinct positions per sample -- or None (default): every row. The split model
        then computes the rest of that block only on these rows (the other rows it hands to
        `encode_forward` are NaN). A stage may keep what it computed here (K-means, top-k) in
        `ctx.plan`, so the step does the same work once and draws the same random numbers."""
        return None

    def default_terminal(self) -> tuple[str, dict[str, Any]]:
        """Terminal stage appended when this stage ends a chain (default: float32)."""
        return "float", {}


# --------------------------------------------------------------------------------------------
# Field validation: one helper every decoder uses, so a new method gets the checks for free
# --------------------------------------------------------------------------------------------
def all_finite(t: torch.Tensor) -> bool:
    """No NaN or inf in `t`. A non-finite element makes the sum non-finite, so a finite sum (one
    reduction, ~20x cheaper than isfinite on 5M values) proves it; only an overflowing sum of
    finite values needs the elementwise check."""
    if not t.dtype.is_floating_point or t.numel() == 0:
        return True
    with torch.no_grad():
        return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def cpu_array(t: torch.Tensor) -> np.ndarray | None:
    """`t`'s memory as a numpy array (no copy) where numpy can read it -- a plain CPU tensor, as
    decoded fields are -- else None. Small decode-side work is cheaper there: a numpy call costs a
    few microseconds where a torch call costs tens on a cold cache."""
    return t.numpy() if type(t) is torch.Tensor and t.device.type == "cpu" else None


def _int_range(t: torch.Tensor) -> tuple[int, int]:
    """(min, max) of an integer tensor."""
    if (a := cpu_array(t)) is not None:
        return int(a.min()), int(a.max())
    lo, hi = torch.aminmax(t if t.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32) else t.long())
    return int(lo), int(hi)


def expect_tensor(
    fields: Decoded,
    name: str,
    who: str,
    *,
    shape: tuple[int, ...] | None = None,
    ndim: int | None = None,
    dtype: torch.dtype | None = None,
    integer: bool = False,
    low: int | None = 0,
    high: int | None = None,
    finite: bool = True,
) -> torch.Tensor:
    """Field `name` as a tensor, or WireFormatError naming `who` and what is wrong.

    Checks, in this order and before any computation on the values: present and a tensor; dtype
    (`dtype` exactly, or any integer type except bool when `integer` or a bound is given); shape
    or ndim; integer values within [low, high]; floating values finite (`finite=False`: a field
    that is itself the stage's output, which the pipeline checks anyway)."""
    t = fields.get(name)
    if not isinstance(t, torch.Tensor):
        raise WireFormatError(f"{who}: field {name!r} missing or not a tensor")
    if dtype is not None and t.dtype != dtype:
        raise WireFormatError(f"{who}: field {name!r} is {t.dtype}, expected {dtype}")
    integer = integer or high is not None
    if integer and (t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool):
        raise WireFormatError(f"{who}: field {name!r} must hold integers, not {t.dtype}")
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise WireFormatError(f"{who}: field {name!r} has shape {tuple(t.shape)}, expected {tuple(shape)}")
    if ndim is not None and t.dim() != ndim:
        raise WireFormatError(f"{who}: field {name!r} has {t.dim()} dims, expected {ndim}")
    if integer and t.numel():
        lo, hi = _int_range(t)
        if (low is not None and lo < low) or (high is not None and hi > high):
            raise WireFormatError(f"{who}: field {name!r} has values outside [{low}, {high}]")
    if finite and not all_finite(t):
        raise WireFormatError(f"{who}: field {name!r} holds NaN or infinite values")
    return t


# --------------------------------------------------------------------------------------------
# Labels (sent by the pipeline unless a stage sends them itself)
# --------------------------------------------------------------------------------------------
def label_dtype(num_classes: int) -> torch.dtype:
    """Smallest integer type that holds every class index (predictions in memory)."""
    if num_classes <= 256:
        return torch.uint8
    if num_classes <= 65536:
        return torch.uint16
    return torch.int32


def label_bits(num_classes: int) -> int:
    """ceil(log2 C): the bits one class index needs on the wire."""
    return bits_for(num_classes)


def label_field(labels: torch.Tensor, num_classes: int) -> Field:
    """Class indices packed at ceil(log2 C) bits each (7 bits for 100 classes)."""
    return Field.packed(labels, label_bits(num_classes), Category.LABELS)


def label_nbytes(batch: int, num_classes: int) -> int:
    return packed_nbytes(batch, label_bits(num_classes))


def read_labels(fields: Decoded, name: str, who: str, batch: int | None, num_classes: int) -> torch.Tensor:
    """Decoded class indices (int64, shape (batch,) or any length when None) in [0, C)."""
    y = expect_tensor(fields, name, who, ndim=1, high=num_classes - 1)
    if batch is not None and y.shape[0] != batch:
        raise WireFormatError(f"{who}: {y.shape[0]} labels for {batch} samples")
    return y.long()


def prediction_message(pred: torch.Tensor, num_classes: int) -> bytes:
    """The server's evaluation answer: predicted classes, packed like labels."""
    return Message({"pred": label_field(pred, num_classes)}).encode()


def read_predictions(data: bytes, batch: int, num_classes: int) -> torch.Tensor:
    """Inverse of `prediction_message`, checked: exactly `batch` class indices in [0, C), so a
    1-element or (B, 1) answer cannot broadcast against the labels."""
    msg = Message.decode(data)
    if list(msg) != ["pred"] or msg.fields["pred"].category != Category.LABELS:
        raise WireFormatError(f"prediction message must hold exactly the labels field 'pred', got {list(msg)}")
    return read_labels({"pred": msg["pred"]}, "pred", "predictions", batch, num_classes)
