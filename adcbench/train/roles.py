"""The two parties of split learning. They share nothing but bytes: the client turns a batch into
a forward message and applies the gradient message it gets back; the server turns a forward
message into a loss, an update of its own parameters and a gradient message.

Mixed precision (`Amp`): each side runs its network half under autocast; the compression stages
see float32 (their arithmetic does not change with the precision) and the terminal stage casts to
the wire dtype. With fp16 each side scales its own loss or incoming gradient with its own
GradScaler; the server unscales the gradient before it is sent, so the wire carries the true dL/dz
and a step that overflowed (inf) is skipped by both scalers alike."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F

from adcbench.core.method import Context, Cut, all_finite, prediction_message
from adcbench.core.pipeline import Pipeline
from adcbench.errors import TrainingDivergedError, WireFormatError
from adcbench.model.split import ClientNet, Select, ServerNet
from adcbench.wire import Category, Kind, Message


def _params(net: torch.nn.Module, pipeline: Pipeline, side: str) -> list[torch.nn.Parameter]:
    return list(net.parameters()) + [p for m in pipeline.modules(side) for p in m.parameters()]


def _check_grads(opt: torch.optim.Optimizer, source: str) -> None:
    """Finite (but huge) values on the wire can still overflow in backpropagation: refuse the
    update rather than write inf/NaN into the weights."""
    grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
    if not all(all_finite(g) for g in grads):
        opt.zero_grad(set_to_none=True)
        raise WireFormatError(f"{source} makes the parameter gradients non-finite; update refused")


def _to(msg: Message, device: torch.device) -> Message:
    for f in msg.fields.values():
        if isinstance(f.value, torch.Tensor):
            f.value = f.value.to(device, non_blocking=True)
    return msg


def payload_dtypes(msg: Message) -> list[str]:
    """What the payload fields of a message were sent as (`float16`, `packed4`, ...), for the record."""
    out = set()
    for f in msg.fields.values():
        if f.category == Category.PAYLOAD and isinstance(f.value, torch.Tensor):
            out.add(f"packed{f.bits}" if f.kind == Kind.PACKED else str(f.value.dtype).removeprefix("torch."))
    return sorted(out)


class Amp:
    """One side's precision: autocast in `dtype` (None: float32, no autocast) and, for float16, a
    GradScaler; the scaler is a disabled pass-through otherwise, so callers need no branches."""

    def __init__(self, dtype: torch.dtype | None, device: torch.device) -> None:
        self.dtype = None if dtype == torch.float32 else dtype
        self.device_type = device.type
        fp16 = self.dtype == torch.float16
        self.scaler = torch.amp.GradScaler(device.type if fp16 else "cpu", enabled=fp16)

    def autocast(self) -> Any:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def step(self, opt: torch.optim.Optimizer) -> None:
        self.scaler.step(opt)
        self.scaler.update()


def _selector(pipeline: Pipeline, ctx: Context, enabled: bool) -> Select | None:
    """The row-skipping callback for the client net: records the attention in `ctx` and asks the
    method which cut rows it reads (None: the method reads them all, or skipping is off)."""
    if not (enabled and pipeline.selects_rows):
        return None

    def select(attention: torch.Tensor) -> torch.Tensor | None:
        ctx.attention = attention
        return pipeline.select_rows(ctx)

    return select


class Client:
    def __init__(
        self,
        net: ClientNet,
        pipeline: Pipeline,
        cut: Cut,
        lr: float,
        seed: int,
        device: torch.device,
        dtype: torch.dtype | None = None,
        row_skip: bool = True,
    ) -> None:
        self.net, self.pipeline, self.cut, self.device = net, pipeline, cut, device
        self.amp = Amp(dtype, device)
        self.sent: list[str] = []  # payload dtypes of the last training message
        self.row_skip = row_skip  # compute the last client block only on the rows a method sends
        self.opt = torch.optim.Adam(_params(net, pipeline, "client"), lr=lr)
        self.generator = torch.Generator().manual_seed(seed)  # method randomness (K-means init, ...)
        self._carrier: torch.Tensor | None = None
        self._ctx: Context | None = None
        self.stats: dict[str, float] = {}

    def forward(self, x: torch.Tensor, y: torch.Tensor, step: int) -> bytes:
        self.net.train()
        self.pipeline.train(True)
        ctx = Context(True, self.cut, step, self.generator, labels=y.to(self.device))
        h, ctx.attention = self._net(x, _selector(self.pipeline, ctx, self.row_skip))
        # Our own divergence: never send it as a payload. With row skipping the rows a method never
        # sends are NaN on purpose (split.py), so only infinities are ours to catch there.
        skipped = self.row_skip and self.pipeline.selects_rows
        if not (~torch.isinf(h.detach()) if skipped else torch.isfinite(h.detach())).all():
            raise TrainingDivergedError(f"client activations became non-finite (loss became NaN) at step {step}")
        msg, self._carrier = self.pipeline.encode_forward(h, ctx)
        self._ctx, self.stats, self.sent = ctx, ctx.stats, payload_dtypes(msg)
        return self.pipeline.pack(msg)

    def _net(self, x: torch.Tensor, select: Select | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The client half under autocast; what the stages get is float32 (see the module doc)."""
        with self.amp.autocast():
            h, attention = self.net(x.to(self.device, non_blocking=True), select)
        return h.float(), None if attention is None else attention.float()

    def backward(self, data: bytes) -> None:
        assert self._carrier is not None and self._ctx is not None, "backward before forward"
        grad = self.pipeline.decode_backward(_to(self.pipeline.unpack(data), self.device), self._ctx)
        if grad.shape != self._carrier.shape:
            raise WireFormatError(
                f"gradient of shape {tuple(grad.shape)} for a tensor of shape {tuple(self._carrier.shape)}"
            )
        self.opt.zero_grad(set_to_none=True)
        carrier, self._carrier, self._ctx = self._carrier, None, None  # the graph is used up below
        carrier.backward(self.amp.scaler.scale(grad.to(carrier.dtype)))
        if not self.amp.scaler.is_enabled():  # fp16: an overflowing step is the scaler's to skip
            _check_grads(self.opt, "the gradient message")
        self.amp.step(self.opt)

    @torch.no_grad()
    def forward_eval(self, x: torch.Tensor, pipeline: Pipeline) -> bytes:
        """Evaluation message: no labels (the client keeps them and scores the predictions)."""
        self.net.eval()
        pipeline.train(False)
        ctx = Context(False, self.cut, 0, self.generator)
        h, ctx.attention = self._net(x, _selector(pipeline, ctx, self.row_skip))
        msg, _ = pipeline.encode_forward(h, ctx)
        return pipeline.pack(msg)


class Server:
    def __init__(
        self,
        net: ServerNet,
        pipeline: Pipeline,
        cut: Cut,
        lr: float,
        seed: int,
        device: torch.device,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.net, self.pipeline, self.cut, self.device = net, pipeline, cut, device
        self.lr = lr
        self.amp = Amp(dtype, device)
        self.sent: list[str] = []  # payload dtypes of the last gradient message
        self.opt = torch.optim.Adam(_params(net, pipeline, "server"), lr=lr)
        self.generator = torch.Generator().manual_seed(seed + 1)

    def train_step(self, data: bytes, step: int) -> tuple[bytes, float]:
        """Forward message in; (gradient message, loss) out."""
        self.net.train()
        self.pipeline.train(True)
        ctx = Context(True, self.cut, step, self.generator)
        server_in, leaf, targets = self.pipeline.decode_forward(_to(self.pipeline.unpack(data), self.device), ctx)
        if targets is None:
            raise WireFormatError("training message carries no labels")
        with self.amp.autocast():
            logits = self.net(server_in).float()
        if targets.shape[0] != logits.shape[0]:
            raise WireFormatError(f"{targets.shape[0]} targets for {logits.shape[0]} samples")
        loss = F.cross_entropy(logits, targets)  # soft targets (ADC) use the probability form
        if not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"training diverged: the loss became {loss.detach().item()} at step {step}; "
                f"try a lower --lr (this run used {self.lr:g}) or a milder method setting"
            )
        self.opt.zero_grad(set_to_none=True)
        self.amp.scaler.scale(loss).backward()
        if not self.amp.scaler.is_enabled():
            _check_grads(self.opt, "the forward message")
        assert leaf.grad is not None
        grad = leaf.grad / self.amp.scaler.get_scale() if self.amp.scaler.is_enabled() else leaf.grad
        self.amp.step(self.opt)  # after the unscaling above: update() changes the scale
        msg = self.pipeline.encode_backward(grad, ctx)
        self.sent = payload_dtypes(msg)
        return self.pipeline.pack(msg), loss.item()

    @torch.no_grad()
    def predict(self, data: bytes, pipeline: Pipeline) -> bytes:
        """Evaluation: forward message in; predicted classes out (as a message)."""
        self.net.eval()
        pipeline.train(False)
        ctx = Context(False, self.cut, 0, self.generator)
        server_in, _, _ = pipeline.decode_forward(_to(pipeline.unpack(data), self.device), ctx)
        with self.amp.autocast():
            pred = self.net(server_in).argmax(dim=1)
        return prediction_message(pred.cpu(), self.cut.num_classes)
