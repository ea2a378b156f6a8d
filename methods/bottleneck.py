"""`bottleneck`: a BottleNet++-style token-wise autoencoder across the cut.

The client encodes every token d -> d' = max(1, round(ratio·d)) with an MLP of `depth` linear
layers; the server decodes d' -> d with a mirrored MLP. Hidden width: `hidden`, or by default the
midpoint round((d + d') / 2) as the authors' code (192 -> 101 -> 10 at ratio 0.05). Hidden
activations are ReLU. Both halves are freshly initialized and trained jointly, each by its own
side's optimizer; the code (N×n×d') is this stage's `rest`, so the next stage puts it on the wire:
float32 by default, or quantized (`bottleneck:ratio=0.1+quant:bits=4`).

Wire: no fields of its own. Analytic: the terminal's size for N×n×d' values.
Backward: autograd through the decoder gives the gradient with respect to the code, N×n×d'
("naturally compressed"). Eval (`compressed`): the autoencoder runs as in training (it is part of
the model, so this is also what the paper evaluates for BottleNet++).

Deviation from the authors' code: their decoder ends in a ReLU, so the server sees non-negative
reconstructions of a residual stream that is not; the default here is no output activation, and
`decoder_act=relu` is the faithful option.
"""

from __future__ import annotations

import torch
from torch import nn

from adcbench.core.method import Context, Cut, Decoded, Fields, Method, register_method
from adcbench.core.params import Param


def mlp(widths: list[int], final: nn.Module | None = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    if final is not None:
        layers.append(final)
    return nn.Sequential(*layers)


@register_method("bottleneck")
class Bottleneck(Method):
    description = "BottleNet++-style token-wise autoencoder d -> d' (client) -> d (server), trained jointly"
    params = (
        Param("ratio", float, 0.1, "code width d'/d", low=0.0, high=1.0, low_open=True),
        Param("depth", int, 2, "linear layers per side", low=1, high=8),
        Param("hidden", int, None, "hidden width (default: midpoint of d and d')", low=1, optional=True),
        Param(
            "decoder_act",
            str,
            "identity",
            "decoder output activation (relu: the authors' variant)",
            choices=("identity", "relu"),
        ),
    )
    eval_compressed = "the autoencoder runs as in training"
    deployment_policy = "compressed"  # the paper evaluates BottleNet++ with its codec on
    rate_param = ("ratio", (0.5, 0.2, 0.05))
    field_categories = {}  # no fields of its own

    def code_dim(self, d: int) -> int:
        return max(1, round(self.config["ratio"] * d))

    def rest_shape(self, in_shape: tuple[int, ...], training: bool) -> tuple[int, ...]:
        return (*in_shape[:-1], self.code_dim(in_shape[-1]))

    def setup(self, cut: Cut, in_shape: tuple[int, ...]) -> None:
        super().setup(cut, in_shape)
        d = in_shape[-1]  # token-wise: the MLPs act on the last axis, whatever comes before it
        c = self.code_dim(d)
        h = self.config["hidden"] or round((d + c) / 2)
        widths = [d] + [h] * (self.config["depth"] - 1) + [c]
        self.client_module = mlp(widths)
        self.server_module = mlp(widths[::-1], nn.ReLU() if self.config["decoder_act"] == "relu" else None)

    def nominal_ratio(self) -> float:
        return self.config["ratio"]  # the authors' code charges the nominal c = d'/d

    def encode_forward(self, x: torch.Tensor, ctx: Context) -> tuple[Fields, torch.Tensor]:
        assert self.client_module is not None, "setup() first"
        return {}, self.client_module(x)

    def decode_forward(self, fields: Decoded, rest: torch.Tensor | None, ctx: Context) -> torch.Tensor:
        assert rest is not None and self.server_module is not None
        return self.server_module(rest)

    def analytic_forward(self, batch: int, in_shape: tuple[int, ...], training: bool) -> tuple[int, int]:
        return 0, batch
