from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import transformers
from composer.core import Event

from src.fused_layernorm import FusedLayerNorm, FusedLayerNormModule, apply_fused_layernorm, layer_norm_triton
from src.mosaic_bert import create_mosaic_bert_mlm


@pytest.mark.parametrize(
    "shape, normalized_shape, affine, bias",
    [((3, 5, 40), (40,), True, True), ((7, 33), (33,), False, False), ((2, 3, 4, 6), (4, 6), True, False)],
    ids=["affine", "no_affine", "2d_no_bias"],
)
def test_triton_kernel_matches_nn_layernorm_values_and_gradients(shape, normalized_shape, affine, bias):
    # On the CPU the kernels run through Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET).
    torch.manual_seed(0)
    reference = nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=affine, bias=bias)
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.normal_()
    x = (3 * torch.randn(shape) + 1).requires_grad_(True)
    params = [x, *reference.parameters()]

    y = layer_norm_triton(x, normalized_shape, reference.weight, reference.bias, reference.eps)
    expected = reference(x)
    torch.testing.assert_close(y, expected, rtol=0, atol=2e-6)

    upstream = torch.randn_like(y)
    grads = torch.autograd.grad(y, params, upstream)
    expected_grads = torch.autograd.grad(expected, params, upstream)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-5)


def test_triton_kernel_rejects_a_mismatched_shape():
    with pytest.raises(ValueError, match=r"does not end in normalized_shape \(8,\)"):
        layer_norm_triton(torch.randn(2, 6), (8,))


def _swap_with_algorithm(model: nn.Module) -> list[nn.LayerNorm]:
    """Run the Composer algorithm as the Trainer would at Event.INIT; return the LayerNorms it replaced."""
    before = [module for module in model.modules() if isinstance(module, nn.LayerNorm)]
    algorithm = FusedLayerNorm()
    assert algorithm.match(Event.INIT, None) and not algorithm.match(Event.FIT_START, None)
    algorithm.apply(Event.INIT, SimpleNamespace(model=model), None)
    return before


def _assert_all_fused_sharing_parameters(model, before):
    after = [module for module in model.modules() if isinstance(module, nn.LayerNorm)]
    assert len(after) == len(before) > 0
    assert all(type(module) is FusedLayerNormModule for module in after)
    for old, new in zip(before, after):
        assert new.weight is old.weight and new.bias is old.bias and new.eps == old.eps


def test_algorithm_replaces_every_layernorm_in_hf_bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=37, hidden_dropout_prob=0.0)
    model = transformers.BertForMaskedLM(config).eval()
    input_ids = torch.randint(0, 40, (2, 6))
    expected = model(input_ids).logits
    before = _swap_with_algorithm(model)
    assert len(before) == 1 + 2 * 2 + 1  # embeddings, two per layer, MLM head
    _assert_all_fused_sharing_parameters(model, before)
    torch.testing.assert_close(model(input_ids).logits, expected, rtol=0, atol=0)


def test_algorithm_replaces_every_layernorm_in_mosaic_bert():
    torch.manual_seed(0)
    composer_model = create_mosaic_bert_mlm(
        pretrained_model_name=None,
        model_config=dict(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=48, hidden_dropout_prob=0.0),
    ).eval()
    input_ids = torch.randint(1, 40, (2, 6))
    expected = composer_model.model(input_ids).logits
    before = _swap_with_algorithm(composer_model)
    assert len(before) == 1 + 2 * 2 + 1
    _assert_all_fused_sharing_parameters(composer_model, before)
    torch.testing.assert_close(composer_model.model(input_ids).logits, expected, rtol=0, atol=0)


def test_apply_fused_layernorm_twice_replaces_nothing_more_and_keeps_sharing():
    shared = nn.LayerNorm(4)
    model = nn.ModuleDict({"a": nn.Sequential(shared), "b": nn.Sequential(shared)})
    assert apply_fused_layernorm(model) == 1
    assert model["a"][0] is model["b"][0] and type(model["a"][0]) is FusedLayerNormModule
    assert apply_fused_layernorm(model) == 0
