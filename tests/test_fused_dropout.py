"""The hidden dropout's mask kernel (src/fused_dropout.py) under TRITON_INTERPRET=1 (tests/conftest.py)."""
import torch

from src.bert_layers import BertForMaskedLM
from src.fused_dropout import hidden_dropout
from src.fused_geglu import dropout_rate
from tests.test_bert_layers import random_batch, tiny_config


def test_drops_the_rate_scales_the_rest_and_the_gradient_uses_the_same_mask():
    torch.manual_seed(0)
    p = 0.3
    x = (torch.rand(37, 300) + 0.5).requires_grad_()  # 11,100 values: a partial last program (8 x 1,024)
    out = hidden_dropout(x, p, training=True)
    kept = out != 0
    scale = 1 / (1 - dropout_rate(p))
    assert abs((~kept).float().mean().item() - dropout_rate(p)) < 0.015
    torch.testing.assert_close(out[kept], x.detach()[kept] * scale, rtol=1e-6, atol=0)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    torch.testing.assert_close(x.grad, torch.where(kept, grad_out * scale, 0.0), rtol=1e-6, atol=0)
    # Rows and programs get masks of their own: no two rows share their pattern.
    assert len({tuple(row.tolist()) for row in kept}) == kept.shape[0]


def test_seeded_runs_repeat_their_masks_and_calls_draw_new_ones():
    x = torch.ones(64, 256)
    torch.manual_seed(5)
    first, second = hidden_dropout(x, 0.1, True), hidden_dropout(x, 0.1, True)
    torch.manual_seed(5)
    assert torch.equal(hidden_dropout(x, 0.1, True), first)
    assert not torch.equal(first, second)


def test_outside_training_or_at_zero_it_is_the_identity():
    x = torch.randn(8, 16)
    assert hidden_dropout(x, 0.1, training=False) is x
    assert hidden_dropout(x, 0.0, training=True) is x
    assert torch.equal(hidden_dropout(x, 1.0, training=True), torch.zeros_like(x))


def test_inside_torch_compile_it_matches_eager():
    x, residual = torch.randn(16, 32), torch.randn(16, 32)

    def block(x):
        return torch.nn.functional.layer_norm(hidden_dropout(x * 1.5, 0.2, True) + residual, (32,))

    results = []
    for function in (block, torch.compile(block, fullgraph=True)):
        torch.manual_seed(3)
        leaf = x.clone().requires_grad_()
        out = function(leaf)
        out.sum().backward()
        results.append((out.detach(), leaf.grad))
    for got, expected in zip(results[1], results[0]):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_mosaic_bert_with_it_trains_and_evaluates_as_without():
    torch.manual_seed(0)
    plain = BertForMaskedLM(tiny_config(num_hidden_layers=2, hidden_dropout_prob=0.1))
    triton_dropout = BertForMaskedLM(tiny_config(num_hidden_layers=2, hidden_dropout_prob=0.1,
                                                 triton_hidden_dropout=True))
    triton_dropout.load_state_dict(plain.state_dict())
    input_ids, attention_mask, token_type_ids = random_batch([9, 4, 7], 9)
    labels = torch.where(attention_mask.bool(), input_ids, -100)
    plain.eval(), triton_dropout.eval()
    eval_losses = [model(input_ids, attention_mask, token_type_ids, labels=labels).loss
                   for model in (plain, triton_dropout)]
    torch.testing.assert_close(eval_losses[1], eval_losses[0], rtol=0, atol=1e-6)
    triton_dropout.train()
    train_losses = [triton_dropout(input_ids, attention_mask, token_type_ids, labels=labels).loss
                    for _ in range(2)]
    assert train_losses[0] != train_losses[1]  # dropout is on, with a new mask per call
    train_losses[0].backward()
    grads = [p.grad for p in triton_dropout.parameters() if p.grad is not None]
    assert len(grads) > 10 and all(torch.isfinite(g).all() for g in grads)
    assert triton_dropout.bert.encoder.layer[0].attention.dropout.kernel is not None
