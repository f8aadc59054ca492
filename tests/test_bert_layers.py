import pytest
import torch
import torch.nn.functional as F
import transformers

from src.bert_layers import BertForMaskedLM, BertForSequenceClassification, BertModel
from src.configuration_bert import BertConfig

VOCAB = 50


def tiny_config(**overrides) -> BertConfig:
    fields = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=48, hidden_dropout_prob=0.0, attention_backend="sdpa")
    return BertConfig(**{**fields, **overrides})


def random_batch(lengths, seqlen, seed=0):
    """Right-padded ids / mask / token types; the same real tokens whatever `seqlen` is."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.zeros(len(lengths), seqlen, dtype=torch.long)
    token_type_ids = torch.zeros_like(input_ids)
    attention_mask = torch.zeros_like(input_ids)
    for row, length in enumerate(lengths):
        input_ids[row, :length] = torch.randint(1, VOCAB, (length,), generator=generator)
        token_type_ids[row, length // 2:length] = 1
        attention_mask[row, :length] = 1
    return input_ids, attention_mask, token_type_ids


@pytest.mark.parametrize("backend", ["torch", "sdpa"])
def test_outputs_do_not_depend_on_how_much_padding(backend):
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_config(attention_backend=backend)).eval()
    lengths = [32, 5, 17, 1]
    short = random_batch(lengths, 32)
    long = random_batch(lengths, 128)
    assert torch.equal(long[0][:, :32], short[0])
    hidden_short = model.bert(*short).last_hidden_state
    hidden_long = model.bert(*long).last_hidden_state
    torch.testing.assert_close(hidden_long[:, :32], hidden_short, rtol=0, atol=1e-6)
    assert torch.count_nonzero(hidden_long[:, 32:]) == 0
    for row, length in enumerate(lengths):
        assert torch.count_nonzero(hidden_short[row, length:]) == 0


def test_masked_only_head_equals_full_head_at_masked_positions():
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_config()).eval()
    input_ids, attention_mask, token_type_ids = random_batch([12, 7, 3], 12)
    labels = torch.full_like(input_ids, -100)
    masked = torch.rand(input_ids.shape, generator=torch.Generator().manual_seed(1)) < 0.4
    masked &= attention_mask.bool()
    labels[masked] = input_ids[masked]
    assert 3 < int(masked.sum()) < 36

    full_logits = model(input_ids, attention_mask, token_type_ids).logits
    assert full_logits.shape == (3, 12, VOCAB)
    out = model(input_ids, attention_mask, token_type_ids, labels=labels)
    assert out.logits.shape == (int(masked.sum()), VOCAB)
    torch.testing.assert_close(out.logits, full_logits[masked], rtol=0, atol=1e-6)
    full_loss = F.cross_entropy(full_logits.view(-1, VOCAB), labels.view(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, full_loss, rtol=1e-6, atol=0)


def test_host_side_counts_give_the_same_loss_logits_and_gradients():
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_config(attention_backend="torch"))
    input_ids, attention_mask, token_type_ids = random_batch([12, 7, 3], 12)
    labels = torch.where(torch.rand(input_ids.shape, generator=torch.Generator().manual_seed(1)) < 0.4,
                         input_ids, -100)
    labels[attention_mask == 0] = -100
    counts = dict(real_token_counts=[12, 7, 3], predicted_token_counts=(labels != -100).sum(1).tolist())
    results = []
    for host_counts in ({}, counts):
        model.zero_grad()
        out = model(input_ids, attention_mask, token_type_ids, labels=labels, **host_counts)
        out.loss.backward()
        results.append((out.loss, out.logits, [p.grad.clone() for p in model.parameters()]))
    (loss, logits, grads), (loss_counted, logits_counted, grads_counted) = results
    assert torch.equal(loss, loss_counted) and torch.equal(logits, logits_counted)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_counted))


def test_decoder_is_tied_to_word_embeddings():
    model = BertForMaskedLM(tiny_config())
    assert model.head.decoder.weight is model.bert.embeddings.word_embeddings.weight


def test_longer_inputs_than_alibi_starting_size_match_a_model_built_for_them():
    torch.manual_seed(0)
    built_short = BertModel(tiny_config(alibi_starting_size=128)).eval()
    built_long = BertModel(tiny_config(alibi_starting_size=512)).eval()
    built_long.load_state_dict(built_short.state_dict())
    batch = random_batch([256, 200], 256)
    out_short, out_long = built_short(*batch), built_long(*batch)
    torch.testing.assert_close(out_short.last_hidden_state, out_long.last_hidden_state, rtol=0, atol=0)
    torch.testing.assert_close(out_short.pooler_output, out_long.pooler_output, rtol=0, atol=0)


def test_plain_mlp_has_hf_bert_parameter_shapes_and_glu_has_gate_and_up():
    plain = BertModel(tiny_config(use_glu=False))
    hf = transformers.BertModel(transformers.BertConfig(**tiny_config().to_dict()))
    assert plain.encoder.layer[0].mlp.wi.weight.shape == hf.encoder.layer[0].intermediate.dense.weight.shape
    assert plain.encoder.layer[0].mlp.wo.weight.shape == hf.encoder.layer[0].output.dense.weight.shape
    glu = BertModel(tiny_config(use_glu=True))
    assert glu.encoder.layer[0].mlp.gated_layers.weight.shape == (2 * 48, 32)
    assert glu.encoder.layer[0].mlp.wo.weight.shape == (32, 48)


def test_glu_computes_gelu_gate_times_up_projection():
    torch.manual_seed(0)
    mlp = BertModel(tiny_config()).encoder.layer[0].mlp
    x = torch.randn(5, 32)
    gate_weight, up_weight = mlp.gated_layers.weight.split(48)
    expected = mlp.layernorm(x + mlp.wo(F.gelu(x @ gate_weight.T) * (x @ up_weight.T)))
    torch.testing.assert_close(mlp(x), expected)


def test_pooler_reads_each_sequences_first_token():
    torch.manual_seed(0)
    model = BertModel(tiny_config()).eval()
    batch = random_batch([6, 2], 6)
    out = model(*batch)
    expected = torch.tanh(model.pooler.dense(out.last_hidden_state[:, 0]))
    torch.testing.assert_close(out.pooler_output, expected)


@pytest.mark.parametrize(
    "num_labels, labels, loss_fn",
    [
        (3, torch.tensor([0, 2]), lambda logits, labels: F.cross_entropy(logits, labels)),
        (3, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), F.binary_cross_entropy_with_logits),
        (1, torch.tensor([0.5, -1.5]), lambda logits, labels: F.mse_loss(logits.squeeze(-1), labels)),
    ],
    ids=["single_label", "multi_label", "regression"],
)
def test_sequence_classification_loss_follows_the_problem_type(num_labels, labels, loss_fn):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(num_labels=num_labels)).eval()
    out = model(*random_batch([5, 3], 5), labels=labels)
    assert out.logits.shape == (2, num_labels)
    torch.testing.assert_close(out.loss, loss_fn(out.logits, labels))


@pytest.mark.parametrize("compile_encoder", [False, True])
def test_gradient_checkpointing_gives_the_same_gradients(compile_encoder):
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_config(compile_encoder=compile_encoder))
    input_ids, attention_mask, token_type_ids = random_batch([9, 4], 9)
    labels = torch.where(attention_mask.bool(), input_ids, -100)

    def gradients():
        model.zero_grad()
        model(input_ids, attention_mask, token_type_ids, labels=labels).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    plain = gradients()
    model.gradient_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.bert.encoder.layer)
    checkpointed = gradients()
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=0, atol=1e-6, msg=name)


# compile_regions: one region shared by the layers, one for the MLM head. compile_encoder: all the layers,
# attention included, in one region, and the head's. cuda_graphs (on the CPU: only its token padding, here
# to multiples of 8 with dummy sequences) must not change a real token's result either.
@pytest.mark.parametrize("switches", [
    dict(compile_regions=True), dict(compile_regions=True, compile_encoder=True),
    dict(compile_regions=True, compile_encoder=True, cuda_graphs=True, cuda_graph_token_bucket=8)],
    ids=["regions", "encoder", "encoder_padded_for_cuda_graphs"])
def test_compiled_regions_give_the_same_loss_and_gradients_and_compile_once(switches):
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    plain = BertForMaskedLM(tiny_config(num_hidden_layers=3))
    regions = BertForMaskedLM(tiny_config(num_hidden_layers=3, **switches))
    regions.load_state_dict(plain.state_dict())
    torch._dynamo.reset()
    counters.clear()
    for lengths, seqlen in (([9, 4], 9), ([12, 12, 3], 12), ([5, 2], 7)):  # three token counts
        input_ids, attention_mask, token_type_ids = random_batch(lengths, seqlen)
        labels = torch.where(attention_mask.bool(), input_ids, -100)
        results = []
        for model in (plain, regions):
            model.zero_grad()
            loss = model(input_ids, attention_mask, token_type_ids, labels=labels).loss
            loss.backward()
            results.append((loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}))
        torch.testing.assert_close(results[1][0], results[0][0], rtol=0, atol=1e-5)
        for name, grad in results[0][1].items():
            torch.testing.assert_close(results[1][1][name], grad, rtol=0, atol=1e-5, msg=name)
    # Two graphs for all three token counts: no recompilation per layer or per batch.
    assert counters["stats"]["unique_graphs"] == 2
    assert counters["stats"]["calls_captured"] > 0


@pytest.mark.parametrize("max_seqlen", [16, 128])
@pytest.mark.parametrize("multiple", [1, 8, 512])
def test_pad_token_count_gives_one_shape_per_bucket_and_dummies_of_1_to_max_seqlen_tokens(max_seqlen, multiple):
    from src.bert_layers import pad_token_count

    sizes, sequence_counts = {}, set()
    for tokens in (1, 7, 100, 511, 512, 513, 3000, 3072):
        hidden = torch.randn(tokens, 4)
        cu_seqlens = torch.tensor([0, tokens // 2, tokens], dtype=torch.int32)
        padded, padded_cu_seqlens = pad_token_count(hidden, cu_seqlens, max_seqlen, multiple)
        dummy_lengths = padded_cu_seqlens[3:] - padded_cu_seqlens[2:-1]
        assert dummy_lengths.min() >= 1 and dummy_lengths.max() <= max_seqlen
        assert (padded.shape[0] - len(dummy_lengths)) % multiple == 0  # the next multiple, plus the dummies
        assert torch.equal(padded[:tokens], hidden) and not padded[tokens:].any()
        assert torch.equal(padded_cu_seqlens[:3], cu_seqlens) and padded_cu_seqlens[-1] == padded.shape[0]
        sizes[tokens] = padded.shape[0]
        sequence_counts.add(len(padded_cu_seqlens))
    assert len(sequence_counts) == 1  # the number of sequences does not depend on the token count
    if multiple == 512:  # one size per multiple of 512; a full one gets only a token per dummy
        assert sizes[1] == sizes[100] == sizes[511] == sizes[512] < sizes[513]
        assert sizes[3072] - 3072 == len(dummy_lengths)


def test_under_ddp_the_compiled_encoder_stays_one_graph_unless_ddp_graph_splits():
    """Inside DistributedDataParallel's forward torch.compile (Dynamo's DDPOptimizer) splits a compiled
    graph at DDP's gradient buckets. `ddp_graph_splits` false keeps the encoder and the head one graph
    each, as on one GPU; both ways train alike. (One gloo rank: DDP's wrapping is all that matters here.)"""
    import torch.distributed as dist
    from torch._dynamo.utils import counters
    from torch.nn.parallel import DistributedDataParallel

    from tests.conftest import free_port

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        input_ids, attention_mask, token_type_ids = random_batch([9, 4], 9)
        labels = torch.where(attention_mask.bool(), input_ids, -100)
        graphs, losses, gradients = {}, {}, {}
        for splits in (False, True):
            torch.manual_seed(0)
            model = BertForMaskedLM(tiny_config(num_hidden_layers=2, hidden_size=256, intermediate_size=1024,
                                                compile_regions=True, compile_encoder=True, ddp_graph_splits=splits))
            wrapped = DistributedDataParallel(model, bucket_cap_mb=1)  # ~4 MB per layer: several buckets each
            torch._dynamo.reset()
            counters.clear()
            loss = wrapped(input_ids, attention_mask, token_type_ids, labels=labels).loss
            loss.backward()
            graphs[splits] = counters["aot_autograd"]["total"]  # graphs compiled, each with its backward
            losses[splits] = loss.detach()
            gradients[splits] = {name: p.grad for name, p in model.named_parameters()}
    finally:
        dist.destroy_process_group()
    assert graphs[False] == 2  # the encoder and the MLM head
    assert graphs[True] > 2
    torch.testing.assert_close(losses[True], losses[False], rtol=0, atol=1e-5)
    for name, grad in gradients[False].items():
        torch.testing.assert_close(gradients[True][name], grad, rtol=0, atol=1e-5, msg=name)


def test_a_whole_model_torch_compile_traces_the_compiled_regions_itself():
    """Composer's `compile_config` compiles the whole model; the model's own compiled regions and encoder
    are then traced by that compilation (run_compiled steps aside) and give the plain model's loss."""
    torch.manual_seed(0)
    plain = BertForMaskedLM(tiny_config())
    regions = BertForMaskedLM(tiny_config(compile_regions=True, compile_encoder=True))
    regions.load_state_dict(plain.state_dict())
    input_ids, attention_mask, token_type_ids = random_batch([9, 4], 9)
    labels = torch.where(attention_mask.bool(), input_ids, -100)
    torch._dynamo.reset()
    expected = plain(input_ids, attention_mask, token_type_ids, labels=labels).loss
    loss = torch.compile(regions)(input_ids, attention_mask, token_type_ids, labels=labels).loss
    loss.backward()
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-5)
    assert all(p.grad is not None for p in regions.parameters() if p.requires_grad)


def test_each_model_gets_its_own_cuda_graph_compilation_and_frees_it():
    """A recorded CUDA graph holds its model's parameter addresses, so `run_compiled(..., cuda_graphs=True)`
    compiles per model (on the CPU Inductor records no graph, but the bookkeeping is the same)."""
    import gc

    from src import bert_layers

    torch.manual_seed(0)
    encoders = [BertModel(tiny_config(compile_encoder=True, cuda_graphs=True)).encoder for _ in range(2)]
    hidden = torch.randn(12, 32)
    cu_seqlens = torch.tensor([0, 5, 12], dtype=torch.int32)
    before = len(bert_layers._graphed)
    for encoder in encoders:
        out = bert_layers.run_compiled(bert_layers.BertEncoder.run_layers, encoder, hidden, cu_seqlens, 16,
                                       ("sdpa", "sdpa"), cuda_graphs=True)
        torch.testing.assert_close(out, encoder.run_layers(hidden, cu_seqlens, 16, ("sdpa", "sdpa")))
    assert len(bert_layers._graphed) == before + 2
    del encoders, encoder
    gc.collect()
    assert len(bert_layers._graphed) == before


def test_cuda_graphs_needs_the_compiled_encoder():
    with pytest.raises(Exception, match="set compile_encoder true"):  # huggingface_hub's strict-dataclass error
        tiny_config(cuda_graphs=True)


def test_low_precision_hidden_states_are_bf16_under_autocast_and_change_nothing_without():
    torch.manual_seed(0)
    plain = BertForMaskedLM(tiny_config(use_glu=True))
    low = BertForMaskedLM(tiny_config(use_glu=True, low_precision_hidden_states=True))
    low.load_state_dict(plain.state_dict())
    input_ids, attention_mask, token_type_ids = random_batch([9, 4, 7], 9)
    labels = torch.where(attention_mask.bool(), input_ids, -100)

    def run(model, autocast):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            hidden = model.bert.encode(input_ids, attention_mask, token_type_ids)[0]
            loss = model(input_ids, attention_mask, token_type_ids, labels=labels).loss
        loss.backward()
        return hidden.dtype, loss.detach(), model.bert.embeddings.word_embeddings.weight.grad.clone()

    # Without autocast the switch does nothing.
    _, loss, grad = run(plain, False)
    dtype, low_loss, low_grad = run(low, False)
    assert dtype == torch.float32
    torch.testing.assert_close(low_loss, loss, rtol=0, atol=0)
    torch.testing.assert_close(low_grad, grad, rtol=0, atol=0)
    # Under autocast the hidden states are bf16 instead of float32; only the residual path is rounded.
    dtype, loss, grad = run(plain, True)
    low_dtype, low_loss, low_grad = run(low, True)
    assert (dtype, low_dtype) == (torch.float32, torch.bfloat16)
    assert 0 < abs(low_loss - loss) < 0.02 * loss
    assert ((low_grad - grad).norm() / grad.norm()) < 0.05


@pytest.mark.parametrize("model_class", [BertForMaskedLM, BertForSequenceClassification])
def test_save_pretrained_then_from_pretrained_gives_identical_outputs(tmp_path, model_class):
    torch.manual_seed(0)
    model = model_class(tiny_config(use_glu=False, alibi_starting_size=64)).eval()
    model.save_pretrained(tmp_path)
    loaded = model_class.from_pretrained(tmp_path).eval()
    assert isinstance(loaded.config, BertConfig)
    assert loaded.config.use_glu is False and loaded.config.alibi_starting_size == 64
    torch.testing.assert_close(loaded.bert.encoder.alibi_slopes, model.bert.encoder.alibi_slopes)
    batch = random_batch([8, 3], 8)
    torch.testing.assert_close(loaded(*batch).logits, model(*batch).logits, rtol=0, atol=0)


def test_config_rejects_a_backend_it_does_not_have():
    with pytest.raises(Exception, match="attention_backend"):
        BertConfig(attention_backend="flash")
