"""The two parties of split learning. They share nothing but bytes: the client turns a batch into
a forward message and applies the gradient message it gets back; the server turns a forward
message into a loss, an update of its own parameters and a gradient message."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from adcbench.core.method import Context, Cut, all_finite, prediction_message
from adcbench.core.pipeline import Pipeline
from adcbench.errors import TrainingDivergedError, WireFormatError
from adcbench.model.split import ClientNet, ServerNet
from adcbench.wire import Message


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
            f.value = f.value.to(device)
    return msg


class Client:
    def __init__(
        self, net: ClientNet, pipeline: Pipeline, cut: Cut, lr: float, seed: int, device: torch.device
    ) -> None:
        self.net, self.pipeline, self.cut, self.device = net, pipeline, cut, device
        self.opt = torch.optim.Adam(_params(net, pipeline, "client"), lr=lr)
        self.generator = torch.Generator().manual_seed(seed)  # method randomness (K-means init, ...)
        self._carrier: torch.Tensor | None = None
        self._ctx: Context | None = None
        self.stats: dict[str, float] = {}

    def forward(self, x: torch.Tensor, y: torch.Tensor, step: int) -> bytes:
        self.net.train()
        self.pipeline.train(True)
        h, attention = self.net(x.to(self.device))
        if not all_finite(h.detach()):  # our own divergence: never send it as a payload
            raise TrainingDivergedError(f"client activations became non-finite (loss became NaN) at step {step}")
        ctx = Context(True, self.cut, step, self.generator, labels=y.to(self.device), attention=attention)
        msg, self._carrier = self.pipeline.encode_forward(h, ctx)
        self._ctx, self.stats = ctx, ctx.stats
        return self.pipeline.pack(msg)

    def backward(self, data: bytes) -> None:
        assert self._carrier is not None and self._ctx is not None, "backward before forward"
        grad = self.pipeline.decode_backward(_to(self.pipeline.unpack(data), self.device), self._ctx)
        if grad.shape != self._carrier.shape:
            raise WireFormatError(
                f"gradient of shape {tuple(grad.shape)} for a tensor of shape {tuple(self._carrier.shape)}"
            )
        self.opt.zero_grad(set_to_none=True)
        carrier, self._carrier, self._ctx = self._carrier, None, None  # the graph is used up below
        carrier.backward(grad.to(carrier.dtype))
        _check_grads(self.opt, "the gradient message")
        self.opt.step()

    @torch.no_grad()
    def forward_eval(self, x: torch.Tensor, pipeline: Pipeline) -> bytes:
        """Evaluation message: no labels (the client keeps them and scores the predictions)."""
        self.net.eval()
        pipeline.train(False)
        h, attention = self.net(x.to(self.device))
        ctx = Context(False, self.cut, 0, self.generator, attention=attention)
        msg, _ = pipeline.encode_forward(h, ctx)
        return pipeline.pack(msg)


class Server:
    def __init__(
        self, net: ServerNet, pipeline: Pipeline, cut: Cut, lr: float, seed: int, device: torch.device
    ) -> None:
        self.net, self.pipeline, self.cut, self.device = net, pipeline, cut, device
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
        logits = self.net(server_in)
        if targets.shape[0] != logits.shape[0]:
            raise WireFormatError(f"{targets.shape[0]} targets for {logits.shape[0]} samples")
        loss = F.cross_entropy(logits, targets)  # soft targets (ADC) use the probability form
        if not torch.isfinite(loss):
            raise TrainingDivergedError(f"loss became {float(loss)} at step {step}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        _check_grads(self.opt, "the forward message")
        self.opt.step()
        assert leaf.grad is not None
        return self.pipeline.pack(self.pipeline.encode_backward(leaf.grad, ctx)), loss.item()

    @torch.no_grad()
    def predict(self, data: bytes, pipeline: Pipeline) -> bytes:
        """Evaluation: forward message in; predicted classes out (as a message)."""
        self.net.eval()
        pipeline.train(False)
        ctx = Context(False, self.cut, 0, self.generator)
        server_in, _, _ = pipeline.decode_forward(_to(pipeline.unpack(data), self.device), ctx)
        pred = self.net(server_in).argmax(dim=1)
        return prediction_message(pred.cpu(), self.cut.num_classes)
