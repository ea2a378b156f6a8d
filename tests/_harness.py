"""A tiny split ViT wired to the real Client/Server roles, for method contract tests."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from adcbench.core.method import Context, Cut
from adcbench.core.pipeline import Pipeline
from adcbench.model.split import cut_shape, split_vit
from adcbench.train.roles import Client, Server

TINY = dict(img_size=8, patch_size=2, in_chans=1, embed_dim=32, depth=4, num_heads=2)
CLASSES = 10
BATCH = 16
SPLIT = 2
CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny shapes: intra-op thread pools cost more than they save (5x slower on a busy 2-core
    box). Modules that import this fixture run single-threaded; other modules are unaffected."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@dataclasses.dataclass
class Harness:
    pipeline: Pipeline
    client: Client
    server: Server
    cut: Cut

    def batch(self, size: int = BATCH, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return torch.randn(size, 1, 8, 8, generator=g), torch.arange(size) % CLASSES

    def step(self, size: int = BATCH, seed: int = 0) -> tuple[bytes, bytes, float]:
        """One training step through real bytes: (forward bytes, backward bytes, loss)."""
        x, y = self.batch(size, seed)
        fwd = self.client.forward(x, y, 0)
        bwd, loss = self.server.train_step(fwd, 0)
        self.client.backward(bwd)
        return fwd, bwd, loss

    def eval_bytes(self, size: int, seed: int = 0) -> tuple[bytes, bytes]:
        x, _ = self.batch(size, seed)
        fwd = self.client.forward_eval(x, self.pipeline)
        return fwd, self.server.predict(fwd, self.pipeline)


def make(spec: str, seed: int = 0, batch: int = BATCH) -> Harness:
    torch.manual_seed(seed)
    vit = VisionTransformer(num_classes=CLASSES, **TINY)
    pipeline = Pipeline.from_spec(spec)
    client_net, server_net = split_vit(vit, SPLIT, capture_attention=pipeline.needs_attention)
    n, d = cut_shape(client_net, TINY["img_size"], TINY["in_chans"])
    cut = Cut(n, d, CLASSES, batch, client_net.num_prefix_tokens)
    pipeline.setup(cut)
    return Harness(
        pipeline,
        Client(client_net, pipeline, cut, 1e-3, seed, CPU),
        Server(server_net, pipeline, cut, 1e-3, seed, CPU),
        cut,
    )


def sent_and_decoded(h: Harness, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The client's activation at the cut and the server's decoded input, through real bytes."""
    x, y = h.batch(seed=seed)
    captured = {}
    encode = h.pipeline.encode_forward

    def spy(act, ctx):
        captured["h"] = act.detach().clone()
        return encode(act, ctx)

    h.pipeline.encode_forward = spy  # an instance attribute: only this harness's pipeline
    data = h.client.forward(x, y, 0)
    del h.pipeline.encode_forward
    server_in, _, _ = h.pipeline.decode_forward(h.pipeline.unpack(data), Context(True, h.cut, 0))
    return captured["h"], server_in.detach()
