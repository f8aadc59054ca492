"""Mosaic BERT configuration: Hugging Face BERT's fields plus the switches Mosaic BERT adds.

It is a transformers `PretrainedConfig`, so `save_pretrained` / `from_pretrained` write and read it as
`config.json`, and an HF BERT `config.json` (e.g. bert-base-uncased) loads into it unchanged.
"""
from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import PretrainedConfig

from src.attention import ATTENTION_BACKENDS


@strict
class BertConfig(PretrainedConfig):
    model_type = "mosaic_bert"

    # Hugging Face BERT's fields, with its defaults (bert-base) unless said otherwise.
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    # HF BERT uses 0.1; Mosaic BERT turns attention dropout off, which is what lets the Triton kernel run.
    attention_probs_dropout_prob: float | int = 0.0
    # Unused (ALiBi replaces position embeddings); kept so an HF BERT config.json loads as is.
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    classifier_dropout: float | int | None = None
    tie_word_embeddings: bool = True

    # Mosaic BERT's switches.
    # Accepted for compatibility with Mosaic BERT configs. The ALiBi bias is built from the per-head
    # slopes for each batch's own length, so this does not bound the input length.
    alibi_starting_size: int = 512
    # Gated linear units (GEGLU) in the feed-forward block; false gives BERT's dense-gelu-dense MLP.
    use_glu: bool = True
    # "auto": the Triton kernel on CUDA when attention dropout is 0, else PyTorch SDPA (src/attention.py).
    attention_backend: Literal[ATTENTION_BACKENDS] = "auto"
    # torch.compile each layer's work between two attention calls (output block, feed-forward block) as
    # one region, and the MLM head with its loss as another, with the token count dynamic; the attention
    # kernel stays outside. +18% samples/s on an H200 (docs/performance.md); off by default because the
    # compilation (~30-60 s) does not pay on short or CPU runs. The recipe YAML turns it on.
    compile_regions: bool = False
    # torch.compile all the layers, attention included, as one graph (the Triton attention kernels are
    # traceable operators), instead of compile_regions' per-layer regions; the MLM head's region stays
    # with compile_regions. Launching a step from one compiled graph costs the host far less time than
    # 12 regions and 12 attention calls from Python (docs/performance.md). Compiles for ~1-2 minutes.
    compile_encoder: bool = False
    # Under autocast, round each LayerNorm's output to the autocast dtype (bf16) instead of keeping it in
    # float32. In a post-LN BERT those outputs are the hidden states, which the residual connections
    # carry from block to block; the matmuls read them in bf16 anyway, so only the residual path loses
    # precision, and the residual adds and LayerNorms move half the bytes. +3.4% samples/s for the recipe
    # and the same accuracy per batch over 100 s of pretraining (H200, session 14); on in the recipe YAMLs.
    low_precision_hidden_states: bool = False
    # The GLU's gelu(gate) * up and its dropout as one Triton kernel each way (src/fused_geglu.py), on CUDA;
    # needs use_glu and hidden_act "gelu". Elsewhere the PyTorch ops run. +8.6% on full-length batches (H200).
    fused_geglu: bool = False
    # The hidden dropout (after the embeddings, the attention output and BERT's own MLP) with its mask from
    # a Triton kernel deciding eight values per Philox call (src/fused_dropout.py), on CUDA; Inductor's own
    # dropout computes one Philox block per value. +1.1% samples/s for the recipe, +2.9% without GLU, the
    # same time to accuracy (H200, session 13); on in the recipe YAMLs. Elsewhere torch's dropout runs.
    triton_hidden_dropout: bool = False
    # With compile_encoder, on CUDA: the compiled encoder replays CUDA graphs (torch.compile's
    # "reduce-overhead" mode), so the host queues a step in about half the time (it matters where the host
    # is slow; the GPU's own time does not change, docs/performance.md). A graph is recorded per token
    # count, so the token count is padded to the next multiple of `cuda_graph_token_bucket` plus a few
    # short dummy sequences that nothing reads (bert_layers.pad_token_count: a handful of graphs for every
    # batch; ~bucket/2 tokens of extra work per batch on average).
    cuda_graphs: bool = False
    cuda_graph_token_bucket: int = 512
    # Under DistributedDataParallel (several GPUs), let torch.compile split each compiled graph at DDP's
    # gradient-bucket boundaries (Dynamo's DDPOptimizer, torch's default), so that a bucket's all-reduce
    # may start while the rest of the backward runs. Off: one graph each, as on one GPU. Split, BERT-base
    # compiles 16 graphs instead of 2, with no fusion across their seams, each replayed on its own under
    # cuda_graphs: the recipe's batch in microbatches of 128 ran on two H200s at 1.25x and 1.60x one GPU
    # (two machines) split, 1.97x whole (docs/performance.md, session 17).
    ddp_graph_splits: bool = False

    def validate_architecture(self):
        """Run by `@strict` after construction: catch shapes that cannot be built."""
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})."
            )
        if self.fused_geglu and self.use_glu and self.hidden_act != "gelu":
            raise ValueError(
                f"fused_geglu computes the exact GELU, and hidden_act is {self.hidden_act!r}: set hidden_act "
                "'gelu' or fused_geglu false."
            )
        if self.cuda_graphs and not self.compile_encoder:
            raise ValueError("cuda_graphs replays the compiled encoder's graphs: set compile_encoder true as "
                             "well, or cuda_graphs false (the recipe YAMLs set both true).")
        if self.cuda_graph_token_bucket < 1:
            raise ValueError(f"cuda_graph_token_bucket must be >= 1, got {self.cuda_graph_token_bucket}.")
