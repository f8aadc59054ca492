"""Mosaic BERT, in the order data flows through it.

BERT (Devlin et al., 2019) with four changes, none of which changes the public API of Hugging Face's
`BertModel` / `BertForMaskedLM` / `BertForSequenceClassification`:
1. ALiBi (Press et al., 2021) instead of position embeddings: each head adds -slope * |i - j| to its
   attention scores, so the model runs on any sequence length.
2. Unpadding: the padding is removed once, at the input; every layer then works on the real tokens only,
   `(total_tokens, hidden)`, with the sequences' boundaries in `cu_seqlens` / `max_seqlen`. Given the
   token counts the collator took on the host, the step never waits for the GPU to learn a size.
3. Attention through `src.attention.attention`, which picks FlashAttention (Triton), SDPA or plain torch.
4. Gated linear units (GEGLU; Shazeer, 2020) in the feed-forward block, switchable off (`use_glu`).
The MLM head computes logits only where there is a label, which is where the loss needs them.

Names follow HF BERT where the module is the same (`embeddings.word_embeddings`, `embeddings.LayerNorm`,
`pooler.dense`, `classifier`); inside a layer they follow Mosaic BERT (`Wqkv`, `gated_layers`, `wo`).
`src.mosaic_bert.hf_bert_to_mosaic_state_dict` maps HF BERT weights onto these names.
"""
import functools
import weakref
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    SequenceClassifierOutput,
)

from src.attention import alibi_slopes, attention, resolve_backend
from src.bert_padding import nonzero_of_known_count, pad_input, unpad_input
from src.configuration_bert import BertConfig


def hidden_states(normed: torch.Tensor, low_precision: bool) -> torch.Tensor:
    """A LayerNorm's output as the hidden states the next block reads: in the autocast dtype with
    `low_precision` (config `low_precision_hidden_states`), else as the LayerNorm left it (float32 under
    autocast)."""
    device = normed.device.type
    if low_precision and torch.is_autocast_enabled(device):
        return normed.to(torch.get_autocast_dtype(device))
    return normed


class HiddenDropout(nn.Dropout):
    """BERT's hidden dropout. With the config's `triton_hidden_dropout` its mask comes from a Triton kernel
    that decides eight values per Philox call (src/fused_dropout.py) instead of Inductor's one call per
    value; the multiply stays in PyTorch, for Inductor to fuse into the residual add and LayerNorm."""

    def __init__(self, config: BertConfig):
        super().__init__(config.hidden_dropout_prob)
        self.kernel = None
        if config.triton_hidden_dropout:  # imported only when asked for: it needs Triton
            import src.fused_dropout as fused_dropout

            self.kernel = fused_dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel is None:
            return super().forward(x)
        return self.kernel.hidden_dropout(x, self.p, self.training)


class BertEmbeddings(nn.Module):
    """Word + token type embeddings, LayerNorm, dropout. No position embeddings: ALiBi gives positions."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = HiddenDropout(config)
        self.low_precision = config.low_precision_hidden_states

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(hidden_states(self.LayerNorm(embeddings), self.low_precision))


class BertAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection, then BERT's post-LN residual block."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.n_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.attention_dropout = config.attention_probs_dropout_prob
        self.backend = config.attention_backend
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.wo = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = HiddenDropout(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.low_precision = config.low_precision_hidden_states

    def forward(
        self, hidden: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, slopes: torch.Tensor
    ) -> torch.Tensor:
        return self.output(hidden, self.attend(hidden, cu_seqlens, max_seqlen, slopes))

    def attend(
        self,
        hidden: torch.Tensor,
        cu_seqlens: torch.Tensor,
        max_seqlen: int,
        slopes: torch.Tensor,
        backend: str | None = None,
    ) -> torch.Tensor:
        """The attention itself: `(total_tokens, n_heads, head_dim)`. `backend`: what
        `resolved_backend` returned, when the caller asked already (the compiled encoder does)."""
        # Wqkv's output rows are [query; key; value], each split into heads: HF's Q, K, V stacked.
        qkv = self.Wqkv(hidden).view(-1, 3, self.n_heads, self.head_dim)
        return attention(qkv, cu_seqlens, max_seqlen, slopes, self.dropout_p(), backend or self.backend)

    def dropout_p(self) -> float:
        return self.attention_dropout if self.training else 0.0

    def resolved_backend(self, device: torch.device) -> str:
        """The backend `attend` will run on `device` in the current mode (`auto` resolved)."""
        return resolve_backend(self.backend, device, self.head_dim, self.dropout_p())

    def output(self, hidden: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Output projection, dropout, residual, LayerNorm."""
        normed = self.layernorm(hidden + self.dropout(self.wo(context.flatten(1))))
        return hidden_states(normed, self.low_precision)


class BertGatedMLP(nn.Module):
    """GEGLU feed-forward: wo(dropout(gelu(x W_gate) * (x W_up))), then the residual LayerNorm.

    `gated_layers` holds [W_gate; W_up] in one matrix, so the two projections are one matmul.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.gated_layers = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.act = ACT2FN[config.hidden_act]
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.wo = nn.Linear(config.intermediate_size, config.hidden_size)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.low_precision = config.low_precision_hidden_states
        self.fused = None
        if config.fused_geglu:  # imported only when asked for: it needs Triton
            import src.fused_geglu as fused_geglu

            self.fused = fused_geglu

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        gated = self.gated_layers(hidden)
        if self.fused is not None and self.fused.runs_on(gated):
            intermediate = self.fused.geglu_dropout(gated, self.dropout.p if self.training else 0.0)
        else:
            gate, up = gated.chunk(2, dim=-1)
            intermediate = self.dropout(self.act(gate) * up)
        return hidden_states(self.layernorm(hidden + self.wo(intermediate)), self.low_precision)


class BertMLP(nn.Module):
    """BERT's own feed-forward (`use_glu: false`): dropout(wo(gelu(wi x))), then the residual LayerNorm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.wi = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.wo = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = HiddenDropout(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.low_precision = config.low_precision_hidden_states

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        normed = self.layernorm(hidden + self.dropout(self.wo(self.act(self.wi(hidden)))))
        return hidden_states(normed, self.low_precision)


class BertLayer(GradientCheckpointingLayer):
    """One transformer block. Tensors go in positionally, which gradient checkpointing needs."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.mlp = BertGatedMLP(config) if config.use_glu else BertMLP(config)
        self.compile_regions = config.compile_regions
        self.ddp_graph_splits = config.ddp_graph_splits

    def forward(
        self,
        hidden: torch.Tensor,
        cu_seqlens: torch.Tensor,
        max_seqlen: int,
        slopes: torch.Tensor,
        attention_backend: str | None = None,
    ) -> torch.Tensor:
        context = self.attention.attend(hidden, cu_seqlens, max_seqlen, slopes, attention_backend)
        if self.compile_regions:  # inside the compiled encoder, run_compiled leaves it to the encoder's graph
            return run_compiled(BertLayer.after_attention, self, hidden, context,
                                ddp_graph_splits=self.ddp_graph_splits)
        return self.after_attention(hidden, context)

    def after_attention(self, hidden: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Everything between this layer's attention and the next layer's: the attention's output block
        and the feed-forward block. Element-wise work (dropout, residual adds, LayerNorm, GELU and the
        GLU product) that `compile_regions` fuses into a few kernels."""
        return self.mlp(self.attention.output(hidden, context))


def run_compiled(method, module: nn.Module, *args, cuda_graphs: bool = False, ddp_graph_splits: bool = False):
    """`method(module, *args)` through one shared `torch.compile` of `method`.

    The module is passed as an argument, so its parameters are graph inputs and all 12 layers share one
    compiled graph rather than compiling 12. Only the tensors' first dimension (tokens, predicted tokens,
    sequences) changes between batches: marked dynamic, it compiles once for every length. Everything
    else is static, Python values among `args` (such as a sequence-length bucket) included: a new value
    compiles anew rather than turning into a symbol that the kernel launches would have to handle.
    With `cuda_graphs` the compiled code records and replays CUDA graphs, one per first dimension; that
    compilation is the module's own, since a recorded graph holds on to the addresses of the module's
    parameters (two models sharing it would re-record each other's graphs).
    Inside DistributedDataParallel's forward torch.compile splits the graph at DDP's gradient buckets
    unless `ddp_graph_splits` is false (the config's `ddp_graph_splits`); Dynamo reads the setting when it
    compiles, which happens within this call. Under a whole-model torch.compile (Composer's `compile_config`)
    the outer compilation traces `method` itself.
    """
    if torch.compiler.is_compiling():
        return method(module, *args)
    for arg in args:
        if isinstance(arg, torch.Tensor):
            torch._dynamo.maybe_mark_dynamic(arg, 0)
    with torch._dynamo.config.patch(optimize_ddp=ddp_graph_splits):
        if not cuda_graphs:
            return compiled(method)(module, *args)
        if module not in _graphed:
            _graphed[module] = torch.compile(method, dynamic=False, mode="reduce-overhead")
        torch.compiler.cudagraph_mark_step_begin()  # a new step: the previous replay's outputs may be overwritten
        return _graphed[module](module, *args)


@functools.cache
def compiled(function):
    return torch.compile(function, dynamic=False)  # dynamic only where run_compiled marks it


_graphed = weakref.WeakKeyDictionary()  # module -> its own "reduce-overhead" compilation


def sequence_length_bucket(max_seqlen: int) -> int:
    """The compiled encoder's sequence-length argument: the longest sequence rounded up to a power of two
    (at least 16), so that a handful of values, each compiled once, covers every batch."""
    return max(16, 1 << (max_seqlen - 1).bit_length())


def pad_token_count(hidden: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, multiple: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """`(hidden, cu_seqlens)` with dummy tokens appended, so that batches of nearby sizes share one shape:
    the token count becomes the next multiple of `multiple` plus the number of dummy sequences. The
    dummies are zeros split into sequences of their own (each sequence attends only to itself, so the real
    tokens' results do not change). Their number depends only on `multiple` and `max_seqlen`, so
    `cu_seqlens` keeps one shape too, and each holds 1 to `max_seqlen` tokens (a sequence with no keys
    would make NaN in padded attention). A full-length batch (a multiple already) gets one token per
    dummy sequence. No host wait: the sizes are the host's, the boundaries are computed on the device."""
    tokens = hidden.shape[0]
    # dummies <= pad < multiple + dummies <= dummies * max_seqlen: spread evenly, none longer than max_seqlen.
    dummies = -(-(multiple - 1) // max(max_seqlen - 1, 1)) + 1
    pad = -(-tokens // multiple) * multiple - tokens + dummies
    ends = tokens + torch.arange(1, dummies + 1, device=cu_seqlens.device) * pad // dummies
    return F.pad(hidden, (0, 0, 0, pad)), torch.cat([cu_seqlens, ends.to(cu_seqlens.dtype)])


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])
        self.compile_encoder = config.compile_encoder
        self.cuda_graphs = config.cuda_graphs
        self.token_bucket = config.cuda_graph_token_bucket
        self.ddp_graph_splits = config.ddp_graph_splits
        # The slopes depend only on the head count, never on the sequence length: this is what lets
        # the model run on inputs longer than any it was trained on.
        self.register_buffer("alibi_slopes", alibi_slopes(config.num_attention_heads), persistent=False)

    def forward(self, hidden: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int) -> torch.Tensor:
        if self.compile_encoder:
            # One graph for all the layers, attention included: the host launches a step's ~600 kernels
            # from compiled code instead of dispatching them one by one from Python (docs/performance.md).
            # The attention kernels depend on max_seqlen only through its power-of-two bucket; passing
            # the bucket keeps the number of compiled graphs to a handful.
            backends = tuple(layer.attention.resolved_backend(hidden.device) for layer in self.layer)
            bucket = sequence_length_bucket(max_seqlen)
            if not self.cuda_graphs:
                return run_compiled(BertEncoder.run_layers, self, hidden, cu_seqlens, bucket, backends,
                                    ddp_graph_splits=self.ddp_graph_splits)
            tokens = hidden.shape[0]
            hidden, cu_seqlens = pad_token_count(hidden, cu_seqlens, bucket, self.token_bucket)
            hidden = run_compiled(BertEncoder.run_layers, self, hidden, cu_seqlens, bucket, backends,
                                  cuda_graphs=hidden.is_cuda, ddp_graph_splits=self.ddp_graph_splits)
            return hidden[:tokens]
        return self.run_layers(hidden, cu_seqlens, max_seqlen)

    def run_layers(
        self,
        hidden: torch.Tensor,
        cu_seqlens: torch.Tensor,
        max_seqlen: int,
        attention_backends: tuple[str, ...] | None = None,
    ) -> torch.Tensor:
        slopes = self.alibi_slopes.float()
        for i, layer in enumerate(self.layer):
            backend = attention_backends[i] if attention_backends is not None else None
            hidden = layer(hidden, cu_seqlens, max_seqlen, slopes, backend)
        return hidden


class BertPooler(nn.Module):
    """dense + tanh on each sequence's first token ([CLS])."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden.index_select(0, cu_seqlens[:-1])))


class BertMLMHead(nn.Module):
    """Transform (dense, gelu, LayerNorm), then the decoder whose weight is the word embeddings'."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.LayerNorm(self.act(self.dense(hidden))))


class BertPreTrainedModel(PreTrainedModel):
    config_class = BertConfig
    base_model_prefix = "bert"
    supports_gradient_checkpointing = True

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # normal(0, initializer_range) weights, zero biases, unit LayerNorms
        if isinstance(module, BertEncoder):
            # A non-persistent buffer: from_pretrained builds the model without running __init__'s values.
            init.copy_(module.alibi_slopes, alibi_slopes(self.config.num_attention_heads))


class BertModel(BertPreTrainedModel):
    """Embeddings, encoder and (optionally) pooler; `forward` returns HF's padded outputs."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        real_token_counts: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """The encoder's output on real tokens: `(hidden (total_tokens, hidden_size), indices, cu_seqlens,
        max_seqlen)`, with `indices` / `cu_seqlens` / `max_seqlen` as `bert_padding.unpad_input` gives them
        (`real_token_counts`: see there).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        # Unpadding the ids rather than the embeddings gives the same tensor without embedding the padding.
        input_ids, indices, cu_seqlens, max_seqlen = unpad_input(input_ids, attention_mask, real_token_counts)
        token_type_ids = token_type_ids.flatten().index_select(0, indices)
        hidden = self.encoder(self.embeddings(input_ids, token_type_ids), cu_seqlens, max_seqlen)
        return hidden, indices, cu_seqlens, max_seqlen

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> BaseModelOutputWithPooling:
        """`last_hidden_state` is (batch, seqlen, hidden_size) with zeros at padding."""
        hidden, indices, cu_seqlens, _ = self.encode(input_ids, attention_mask, token_type_ids)
        return BaseModelOutputWithPooling(
            last_hidden_state=pad_input(hidden, indices, *input_ids.shape),
            pooler_output=self.pooler(hidden, cu_seqlens) if self.pooler is not None else None,
        )


class BertForMaskedLM(BertPreTrainedModel):
    _tied_weights_keys = {"head.decoder.weight": "bert.embeddings.word_embeddings.weight"}

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.head = BertMLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.head.decoder

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.head.decoder = value

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        real_token_counts: Sequence[int] | None = None,
        predicted_token_counts: Sequence[int] | None = None,
    ) -> MaskedLMOutput:
        """With `labels`, `logits` are `(n_predicted, vocab_size)`: one row per label != -100 on a real
        token, in batch-major order, i.e. aligned with `labels[(labels != -100) & attention_mask.bool()]`.
        The decoder (the largest matmul in BERT) then runs on the ~15-30% of tokens that are masked; the loss
        is the same as from full logits. Without labels, `logits` are `(batch, seqlen, vocab_size)`, zeros
        at padding.

        `real_token_counts` and `predicted_token_counts` (per sequence, counted on the host by
        `text_data.MLMCollator`) are what the forward would otherwise read back from the GPU to size the
        unpadded and the predicted tensors; given them, a training step never waits for the GPU.
        """
        if torch.compiler.is_compiling():
            # Under a whole-model torch.compile, reading the lists would make their values part of the
            # compiled graph's guards: a recompilation for every new batch. The compiled graph breaks at
            # the unpadding anyway.
            real_token_counts = predicted_token_counts = None
        hidden, indices, _, _ = self.bert.encode(input_ids, attention_mask, token_type_ids, real_token_counts)
        if labels is None:
            return MaskedLMOutput(logits=pad_input(self.head(hidden), indices, *input_ids.shape))
        labels = labels.flatten().index_select(0, indices)
        predicted = labels != -100
        if predicted_token_counts is None:
            hidden, labels = hidden[predicted], labels[predicted]
        else:
            positions = nonzero_of_known_count(predicted, sum(predicted_token_counts))
            hidden, labels = hidden.index_select(0, positions), labels.index_select(0, positions)
        if self.config.compile_regions:  # fuses the head's GELU and LayerNorm, and the softmax of the loss
            loss, logits = run_compiled(BertForMaskedLM.masked_lm_loss, self, hidden, labels,
                                        ddp_graph_splits=self.config.ddp_graph_splits)
        else:
            loss, logits = self.masked_lm_loss(hidden, labels)
        return MaskedLMOutput(loss=loss, logits=logits)

    def masked_lm_loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(loss, logits)` of the head on the predicted tokens' hidden states."""
        logits = self.head(hidden)
        return F.cross_entropy(logits, labels), logits


class BertForSequenceClassification(BertPreTrainedModel):
    """Pooled [CLS] -> dropout -> linear. The loss follows `config.problem_type` as in HF BERT; when it
    is unset: regression for one label, single-label for integer labels, else multi-label.
    """

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config)
        dropout = config.classifier_dropout
        self.dropout = nn.Dropout(config.hidden_dropout_prob if dropout is None else dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        hidden, _, cu_seqlens, _ = self.bert.encode(input_ids, attention_mask, token_type_ids)
        logits = self.classifier(self.dropout(self.bert.pooler(hidden, cu_seqlens)))
        loss = None if labels is None else self._loss(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        num_labels = self.config.num_labels
        problem_type = self.config.problem_type
        if problem_type is None:
            if num_labels == 1:
                problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                problem_type = "single_label_classification"
            else:
                problem_type = "multi_label_classification"
        if problem_type == "regression":
            return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
        if problem_type == "single_label_classification":
            return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
