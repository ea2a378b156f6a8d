import copy

import pytest
import timm
import torch
from conftest import tiny_vit

from adcbench.errors import AdcbenchError
from adcbench.model.split import split_vit


def _models():
    yield "tiny", tiny_vit(depth=4), torch.randn(3, 1, 8, 8), 2
    torch.manual_seed(0)
    yield (
        "deit_tiny",
        timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=7),
        torch.randn(2, 3, 224, 224),
        3,
    )
    yield "tiny_avgpool", tiny_vit(depth=3, global_pool="avg", class_token=False), torch.randn(3, 1, 8, 8), 1


@pytest.mark.parametrize("name,vit,x,split", list(_models()), ids=lambda v: v if isinstance(v, str) else "")
def test_client_then_server_equals_unsplit(name, vit, x, split):
    vit.eval()
    ref = copy.deepcopy(vit)(x)
    client, server = split_vit(vit, split, capture_attention=(name != "tiny_avgpool"))
    client.eval(), server.eval()
    h, _ = client(x)
    assert torch.allclose(server(h), ref, atol=1e-5)


def test_halves_share_no_parameters_and_cover_the_model():
    vit = tiny_vit()
    total = sum(p.numel() for p in vit.parameters())
    client, server = split_vit(vit, 2)
    ids_c = {id(p) for p in client.parameters()}
    ids_s = {id(p) for p in server.parameters()}
    assert not ids_c & ids_s
    assert sum(p.numel() for p in client.parameters()) + sum(p.numel() for p in server.parameters()) == total


def test_attention_scores_match_explicit_attention():
    vit = tiny_vit(depth=4, heads=2)
    vit.eval()
    x = torch.randn(5, 1, 8, 8)
    client, _ = split_vit(vit, 3, capture_attention=True)
    client.eval()
    h, scores = client(x)
    # explicit: run blocks up to the last client block, then its attention by hand
    v = client.vit
    t = v.norm_pre(v.patch_drop(v._pos_embed(v.patch_embed(x))))
    for blk in v.blocks[:-1]:
        t = blk(t)
    attn = v.blocks[-1].attn
    y = v.blocks[-1].norm1(t)
    B, N, C = y.shape
    qkv = attn.qkv(y).reshape(B, N, 3, attn.num_heads, C // attn.num_heads).permute(2, 0, 3, 1, 4)
    full = ((qkv[0] * attn.scale) @ qkv[1].transpose(-2, -1)).softmax(-1)  # B×H×N×N
    expected = full[:, :, 0, :].mean(1)
    assert scores.shape == (5, N)
    assert torch.allclose(scores, expected, atol=1e-6)
    assert torch.allclose(scores.sum(1), torch.ones(5), atol=1e-5)
    assert not scores.requires_grad


def test_no_attention_hook_unless_asked():
    client, _ = split_vit(tiny_vit(), 2)
    _, scores = client(torch.randn(2, 1, 8, 8))
    assert scores is None
    assert not client.vit.blocks[1].attn.qkv._forward_hooks


@pytest.mark.parametrize("split", [0, 4, 9])
def test_split_out_of_range(split):
    with pytest.raises(AdcbenchError, match="out of range"):
        split_vit(tiny_vit(depth=4), split)
