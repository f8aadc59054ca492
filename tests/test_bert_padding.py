import pytest
import torch

from src.bert_padding import attention_mask_from_cu_seqlens, pad_input, unpad_input


def _batch():
    torch.manual_seed(0)
    hidden = torch.randn(3, 7, 5, dtype=torch.float64, requires_grad=True)
    attention_mask = torch.tensor([[1] * 7, [1] * 3 + [0] * 4, [1] * 5 + [0] * 2])
    return hidden, attention_mask


def test_unpad_input_keeps_real_tokens_in_batch_order():
    hidden, attention_mask = _batch()
    unpadded, indices, cu_seqlens, max_seqlen = unpad_input(hidden, attention_mask)
    expected = torch.cat([hidden[0, :7], hidden[1, :3], hidden[2, :5]])
    assert torch.equal(unpadded, expected)
    assert indices.tolist() == list(range(0, 7)) + list(range(7, 10)) + list(range(14, 19))
    assert cu_seqlens.dtype == torch.int32 and cu_seqlens.tolist() == [0, 7, 10, 15]
    assert max_seqlen == 7 and isinstance(max_seqlen, int)


def test_pad_input_inverts_unpad_input_forward_and_backward():
    hidden, attention_mask = _batch()
    unpadded, indices, _, _ = unpad_input(hidden, attention_mask)
    repadded = pad_input(unpadded, indices, 3, 7)
    mask = attention_mask[..., None].to(hidden.dtype)
    assert torch.equal(repadded, hidden * mask)

    upstream = torch.randn_like(hidden)
    (repadded * upstream).sum().backward()
    # Gradient flows back to exactly the real tokens, unchanged; padding gets zero.
    assert torch.equal(hidden.grad, upstream * mask)


def test_pad_input_gradient_reaches_unpadded_rows():
    _, attention_mask = _batch()
    unpadded = torch.randn(15, 4, requires_grad=True)
    _, indices, _, _ = unpad_input(torch.zeros(3, 7, 4), attention_mask)
    upstream = torch.randn(3, 7, 4)
    (pad_input(unpadded, indices, 3, 7) * upstream).sum().backward()
    assert torch.equal(unpadded.grad, upstream.flatten(0, 1)[indices])


def test_attention_mask_from_cu_seqlens_gives_back_the_same_unpadding():
    _, attention_mask = _batch()
    _, indices, cu_seqlens, max_seqlen = unpad_input(torch.zeros(3, 7), attention_mask)
    rebuilt = attention_mask_from_cu_seqlens(cu_seqlens, max_seqlen)
    assert torch.equal(rebuilt, attention_mask.bool())


def test_host_side_token_counts_give_the_same_unpadding():
    hidden, attention_mask = _batch()
    from_the_mask = unpad_input(hidden, attention_mask)
    from_the_counts = unpad_input(hidden, attention_mask, real_token_counts=[7, 3, 5])
    for expected, given in zip(from_the_mask, from_the_counts):
        assert torch.equal(torch.as_tensor(expected), torch.as_tensor(given))


def test_a_wrong_host_side_count_is_an_error_not_a_silently_different_batch():
    hidden, attention_mask = _batch()
    with pytest.raises(RuntimeError, match="token count does not match the mask"):
        unpad_input(hidden, attention_mask, real_token_counts=[7, 3, 4])
