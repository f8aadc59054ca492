"""The GEGLU + dropout Triton kernels (src/fused_geglu.py) under TRITON_INTERPRET=1 (tests/conftest.py)."""
import pytest
import torch

from src.bert_layers import BertForMaskedLM
from src.configuration_bert import BertConfig
from src.fused_geglu import KERNELS as KERNEL_NAMES
from src.fused_geglu import dropout_rate, geglu_dropout, geglu_dropout_reference
from tests.test_bert_layers import random_batch, tiny_config


def values_and_gradient(function, gated, grad_out):
    gated = gated.detach().clone().requires_grad_()
    out = function(gated)
    out.backward(grad_out)
    return out, gated.grad


KERNELS = pytest.mark.parametrize("kernel", KERNEL_NAMES)


@KERNELS
@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (torch.float16, 2e-3)])
def test_without_dropout_equals_pytorch(dtype, atol, kernel):
    torch.manual_seed(0)
    gated = torch.randn(37, 2 * 48, dtype=dtype) * 2  # 37 * 48 elements: the last block is partial
    grad_out = torch.randn(37, 48, dtype=dtype)
    out, grad = values_and_gradient(lambda g: geglu_dropout(g, 0.0, kernel), gated, grad_out)
    ref_out, ref_grad = values_and_gradient(lambda g: geglu_dropout_reference(g, 0.0), gated, grad_out)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=atol)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=atol)


@KERNELS
@pytest.mark.parametrize("intermediate", [96, 1100])  # 1,100: a tile and a partial one per row (tiled kernels)
def test_dropout_drops_p_of_the_values_and_backward_uses_the_same_mask(kernel, intermediate):
    torch.manual_seed(0)
    p = 0.3
    gated = torch.randn(64 if intermediate < 1000 else 8, 2 * intermediate)
    grad_out = torch.randn(gated.shape[0], intermediate)
    out, grad = values_and_gradient(lambda g: geglu_dropout(g, p, kernel), gated, grad_out)
    keep = out != 0
    assert abs((1 - keep.float().mean().item()) - p) < 0.03
    # Kept values are scaled by 1 / (1 - the rate dropped); the gradient is that of the same mask (never stored).
    rate = dropout_rate(p, kernel)
    assert abs(rate - p) <= 0.5 / 65536
    ref_out, ref_grad = values_and_gradient(lambda g: geglu_dropout_reference(g, rate, keep), gated, grad_out)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-5)
    # Masks come from torch's generator: the same seed gives the same mask, the next call another.
    # No pattern across the row's tiles or quarters, nor from row to row (the tiled kernels' random
    # numbers come four to a Philox call, keyed by row and column).
    assert not torch.equal(keep[0], keep[1])
    if intermediate > 1000:
        assert not torch.equal(keep[:, :256], keep[:, 256:512]) and not torch.equal(keep[:, :76], keep[:, 1024:])
        # tiled8: slots 0 and 4 take the low and the high 16 bits of the same Philox word.
        assert not torch.equal(keep[:, :128], keep[:, 512:640])
    torch.manual_seed(5)
    first, second = geglu_dropout(gated, p, kernel), geglu_dropout(gated, p, kernel)
    torch.manual_seed(5)
    assert torch.equal(geglu_dropout(gated, p, kernel), first) and not torch.equal(first, second)


@KERNELS
def test_inside_torch_compile_it_matches_eager(kernel):
    torch.manual_seed(0)
    gated = torch.randn(16, 2 * 32)
    grad_out = torch.randn(16, 32)

    def block(g):
        return geglu_dropout(g * 1.5, 0.2, kernel) + 1

    torch.manual_seed(3)
    eager = values_and_gradient(block, gated, grad_out)
    torch.manual_seed(3)
    compiled = values_and_gradient(torch.compile(block, fullgraph=True), gated, grad_out)
    for got, expected in zip(compiled, eager):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("compile_regions", [False, True])
def test_mosaic_bert_with_fused_geglu_gives_the_same_loss_and_gradients(compile_regions):
    torch.manual_seed(0)
    plain = BertForMaskedLM(tiny_config(num_hidden_layers=2))
    fused = BertForMaskedLM(tiny_config(num_hidden_layers=2, fused_geglu=True, compile_regions=compile_regions))
    fused.load_state_dict(plain.state_dict())
    input_ids, attention_mask, token_type_ids = random_batch([9, 4, 7], 9)
    labels = torch.where(attention_mask.bool(), input_ids, -100)
    results = []
    for model in (plain, fused):
        loss = model(input_ids, attention_mask, token_type_ids, labels=labels).loss
        loss.backward()
        results.append((loss.detach(), {name: p.grad for name, p in model.named_parameters()}))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=0, atol=1e-5)
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, rtol=0, atol=1e-5, msg=name)


def test_fused_geglu_refuses_an_activation_it_does_not_compute():
    with pytest.raises(Exception, match="fused_geglu computes the exact GELU"):
        BertConfig(fused_geglu=True, hidden_act="relu")
