"""Moving between a padded batch `(batch, seqlen, ...)` and its real tokens `(total_tokens, ...)`.

Mosaic BERT removes the padding once, right at the input, and runs every layer on real tokens only.
The sequences' boundaries travel as `cu_seqlens` (int32, `(batch + 1,)`, `cu_seqlens[0] == 0`:
sequence `b` is rows `cu_seqlens[b]:cu_seqlens[b + 1]`) and `max_seqlen` (a Python int, what kernels
size their tiles by). Both directions are plain index ops (`index_select` / `index_copy`), whose
backward passes are the matching scatter / gather, so autograd needs nothing custom.
"""
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def unpad_input(
    hidden: torch.Tensor, attention_mask: torch.Tensor, real_token_counts: Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Keep the rows of `hidden` (batch, seqlen, ...) where `attention_mask` (batch, seqlen) is nonzero.

    Returns `(hidden_unpadded, indices, cu_seqlens, max_seqlen)`: `hidden_unpadded` is
    `(total_tokens, ...)` in batch-major order, `indices` are the kept rows' positions in the flattened
    `(batch * seqlen)` batch. Real tokens need not be left-aligned: whatever the mask keeps is a token.

    `real_token_counts` (one Python int per sequence, the mask's row sums, as the collator counted them on
    the host) lets this run without waiting for the GPU: the output sizes are then known before the mask
    is read. Without it the token count and `max_seqlen` are read back from the GPU (two waits).
    """
    mask = attention_mask.bool()
    seqlens = mask.sum(dim=1, dtype=torch.int32)
    cu_seqlens = F.pad(torch.cumsum(seqlens, dim=0, dtype=torch.int32), (1, 0))
    if real_token_counts is None:
        indices = torch.nonzero(mask.flatten()).flatten()
        max_seqlen = int(seqlens.max()) if seqlens.numel() else 0
    else:
        indices = nonzero_of_known_count(mask.flatten(), sum(real_token_counts))
        max_seqlen = max(real_token_counts, default=0)
    return hidden.flatten(0, 1).index_select(0, indices), indices, cu_seqlens, max_seqlen


def nonzero_of_known_count(flat_mask: torch.Tensor, count: int) -> torch.Tensor:
    """The positions of the `count` nonzero entries of a 1-D `flat_mask`, without a GPU->host wait.

    `torch.nonzero` must read the count back before it can size its output; given the count, the
    output size is known. A wrong count would silently drop or invent tokens, so the GPU checks it
    (an asynchronous assert: it fails the next CUDA call instead of stalling this one).
    """
    torch._assert_async(flat_mask.sum() == count, "the host-side token count does not match the mask")
    return torch.nonzero_static(flat_mask, size=count).flatten()


def pad_input(hidden_unpadded: torch.Tensor, indices: torch.Tensor, batch: int, seqlen: int) -> torch.Tensor:
    """Inverse of `unpad_input`: `(total_tokens, ...)` back to `(batch, seqlen, ...)`, zeros at padding."""
    flat_shape = (batch * seqlen, *hidden_unpadded.shape[1:])
    padded = hidden_unpadded.new_zeros(flat_shape).index_copy(0, indices, hidden_unpadded)
    return padded.view(batch, seqlen, *hidden_unpadded.shape[1:])


def attention_mask_from_cu_seqlens(cu_seqlens: torch.Tensor, max_seqlen: int) -> torch.Tensor:
    """The left-aligned `(batch, max_seqlen)` bool mask whose `unpad_input` gives these `cu_seqlens`."""
    seqlens = cu_seqlens[1:] - cu_seqlens[:-1]
    return torch.arange(max_seqlen, device=cu_seqlens.device)[None, :] < seqlens[:, None]
