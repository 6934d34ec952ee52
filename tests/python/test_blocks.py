"""kancore.nn building blocks: a transformer feed-forward block and a CNN classifier head, with both
layer kinds, under torch.compile and autocast, saved and loaded through the model file."""
import pytest

torch = pytest.importorskip("torch")

import kancore  # noqa: E402
from kancore.nn import KANClassifierHead, KANFeedForward  # noqa: E402

KINDS = ["bspline", "c0"]


@pytest.mark.parametrize("kind", KINDS)
def test_feed_forward_block_in_a_transformer_layer(kind):
    torch.manual_seed(0)
    block = KANFeedForward(16, 24, kind=kind, dropout=0.1)
    x = torch.randn(2, 7, 16)
    y = block(x)
    assert y.shape == (2, 7, 16)
    assert block.widths == [16, 24, 16] and block.layernorm
    # Pre-norm residual use, as a transformer does; gradients reach the input and every parameter.
    norm = torch.nn.LayerNorm(16)
    x.requires_grad_(True)
    (x + block(norm(x))).square().mean().backward()
    assert x.grad is not None and all(p.grad is not None for p in block.parameters())
    block.eval()  # dropout off: deterministic, and equal to the plain KAN path
    with torch.no_grad():
        assert torch.equal(block(x), kancore.KAN.forward(block, x))


@pytest.mark.parametrize("kind", KINDS)
def test_classifier_head_flattens_cnn_features(kind):
    torch.manual_seed(0)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2))
    head = KANClassifierHead(4 * 3 * 3, 10, hidden=(8,), kind=kind)
    images = torch.randn(5, 1, 8, 8)
    logits = head(cnn(images))
    assert logits.shape == (5, 10)
    with torch.no_grad():
        head(cnn(images), update_grid=True)  # grids adapt to the (unnormalised) features
    torch.nn.functional.cross_entropy(head(cnn(images)), torch.arange(5)).backward()
    assert cnn[0].weight.grad is not None
    with pytest.raises(ValueError, match="features"):
        head(torch.randn(5, 3, 3, 3))
    with pytest.raises(ValueError, match="batch"):
        head(torch.randn(36))


@pytest.mark.parametrize("kind", KINDS)
def test_blocks_compile_autocast_and_round_trip_through_the_model_file(tmp_path, kind):
    torch.manual_seed(0)
    block = KANFeedForward(8, 12, kind=kind).eval()
    x = torch.randn(3, 4, 8)
    with torch.no_grad():
        want = block(x)
        compiled = torch.compile(block, backend="eager", fullgraph=True)
        torch.testing.assert_close(compiled(x), want, rtol=0, atol=0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = block(x.to(torch.bfloat16))
        assert y.dtype in (torch.float32, torch.bfloat16) and y.shape == want.shape
    kancore.save(block, tmp_path / "ffn.safetensors")
    back = kancore.load(tmp_path / "ffn.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(back(x), want, rtol=0, atol=0)
    head = KANClassifierHead(6, 3, hidden=(), kind=kind).eval()
    kancore.save(head, tmp_path / "head.safetensors")
    f = torch.randn(4, 6)
    with torch.no_grad():
        torch.testing.assert_close(kancore.load(tmp_path / "head.safetensors")(f), head(f), rtol=0, atol=0)


def test_bad_block_arguments_are_refused():
    with pytest.raises(ValueError, match="dropout"):
        KANFeedForward(4, 8, dropout=1.0)
    with pytest.raises(ValueError, match="dropout"):
        KANClassifierHead(4, 2, dropout=-0.1)
    with pytest.raises(ValueError):
        KANFeedForward(4, 8, kind="mlp")
    assert isinstance(kancore.nn.KANFeedForward(4, 8, kind="c0"), kancore.KAN)
