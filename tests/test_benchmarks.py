"""benchmarks/pretraining.py's plumbing on the CPU with a tiny model: the GPU session must not be the
first place its commands run."""
import json
import subprocess
import sys
import warnings

import pytest
import torch

from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import pretraining  # noqa: E402
import throughput  # noqa: E402
import token_buckets  # noqa: E402

SCRIPT = str(REPO_ROOT / "benchmarks" / "pretraining.py")
TINY = ["model.model_config.hidden_size=32", "model.model_config.intermediate_size=64",
        "model.model_config.num_attention_heads=2", "model.model_config.num_hidden_layers=2", "precision=fp32",
        "max_seq_len=64", "train_loader.num_workers=0", "eval_loader.num_workers=0", "eval_subset_num_batches=2",
        "callbacks.speed_monitor.window_size=4",
        # The recipe's GPU settings; on the CPU (Triton interpreted) they would only slow this down.
        "model.model_config.compile_regions=false", "model.model_config.compile_encoder=false",
        "model.model_config.fused_geglu=false", "model.model_config.cuda_graphs=false"]


def test_time_to_reach_interpolates_between_evaluations():
    evals = [{"train_s": 10, "MaskedAccuracy": 0.2}, {"train_s": 20, "MaskedAccuracy": 0.6},
             {"train_s": 30, "MaskedAccuracy": 0.7}]
    assert pretraining.time_to_reach(evals, 0.4) == pytest.approx(15.0)
    assert pretraining.time_to_reach(evals, 0.1) == 10
    assert pretraining.time_to_reach(evals, 0.9) is None


def test_accuracy_speed_and_report_run_end_to_end(synthetic_data, tmp_path):
    data = str(synthetic_data["root"])
    accuracy_json = tmp_path / "time_to_accuracy_mosaic_bert.json"
    subprocess.run([sys.executable, SCRIPT, "accuracy", "--model", "mosaic_bert", "--data", data, "--batch_size", "8",
                    "--budget_s", "4", "--eval_every", "3", "--warmup", "2", "--lr", "1e-3", "--out",
                    str(accuracy_json), *TINY], cwd=tmp_path, check=True)
    run = json.loads(accuracy_json.read_text())
    evals = run["evals"]
    assert [e["batch"] for e in evals] == sorted({e["batch"] for e in evals}) and len(evals) >= 2
    assert 4 <= evals[-1]["train_s"] < 6, "training stops at the budget (evaluation time not counted)"
    assert all(0 <= e["MaskedAccuracy"] <= 1 for e in evals)
    # the model's settings as run, YAML and overrides together (a later YAML change cannot relabel a result)
    assert run["model_config"]["hidden_size"] == 32 and run["model_config"]["triton_hidden_dropout"] is True
    assert run["data"] == data  # the report pairs Mosaic and HF runs of the same data and seed

    speed_json = tmp_path / "pretraining_speed_mosaic_1gpu.json"
    subprocess.run([sys.executable, "-m", "composer.cli.launcher", "-n", "1", SCRIPT, "speed", "--model", "mosaic_bert", "--data", data, "--batch_size", "8",
                    "--steps", "16", "--raw_steps", "2", "--loader_batches", "3", "--profile_composer", "--out", str(speed_json), *TINY],
                   cwd=tmp_path, check=True)
    speed = json.loads(speed_json.read_text())
    for key in ("dataloader_samples_per_s", "raw_loop_samples_per_s", "raw_loop_live_loader_samples_per_s",
                "speed_monitor_samples_per_s"):
        assert speed[key] > 0, key
    assert "composer_profile" in speed and speed["composer_profile"] is None  # its callback ran; it profiles GPUs only
    assert all(1 <= batch <= 16 and ms >= 0 for batch, ms in speed["gc_full_collections"])
    assert speed["composer_vs_raw"] == pytest.approx(speed["speed_monitor_samples_per_s"]
                                                     / speed["raw_loop_samples_per_s"])

    subprocess.run([sys.executable, SCRIPT, "report", "--results", str(tmp_path)], check=True)
    report = (tmp_path / "pretraining.md").read_text()
    assert "| pretraining_speed_mosaic_1gpu | 1 |" in report
    assert "| time_to_accuracy_mosaic_bert |" in report
    assert (tmp_path / "time_to_accuracy.png").stat().st_size > 0


def test_without_ascii_path_sends_every_text_through_the_whole_pipeline(synthetic_data, monkeypatch):
    from src import text_data
    from src.tokenization import load_tokenizer

    monkeypatch.setattr(text_data.AsciiFastPath, "of", text_data.AsciiFastPath.__dict__["of"])  # undone after
    tokenizer = load_tokenizer(str(synthetic_data["tokenizer"]))
    with_path = text_data.SampleTokenizer(tokenizer, 32)
    pretraining.without_ascii_path()
    without = text_data.SampleTokenizer(tokenizer, 32)
    assert with_path.ascii is not None and without.ascii is None
    text = "The Quick brown fox, said the note."
    assert without.encode(text) == with_path.encode(text)


def test_full_collections_are_timed_with_the_batch_they_began_in():
    import gc
    from types import SimpleNamespace

    collections = pretraining.FullCollections()
    collections.fit_start(None, None)
    try:
        collections.batch_start(SimpleNamespace(timestamp=SimpleNamespace(batch=6)), None)
        gc.collect(1)  # a younger generation's collection is not a full one
        gc.collect()
    finally:
        collections.fit_end(None, None)
    gc.collect()  # after fit_end: not recorded
    assert len(collections.pauses) == 1
    assert collections.pauses[0][0] == 7 and collections.pauses[0][1] >= 0


def test_token_buckets_gives_the_encoders_padded_shape_and_when_each_shape_first_appears():
    from src.bert_layers import pad_token_count

    lengths = torch.tensor([100, 0, 128, 37])  # a row of padding only counts for nothing
    tokens, seq_bucket = token_buckets.padded_token_count(lengths, 512)
    cu_seqlens = torch.tensor([0, 100, 228, 265], dtype=torch.int32)
    assert seq_bucket == 128
    assert tokens == pad_token_count(torch.zeros(265, 1), cu_seqlens, 128, 512)[0].shape[0]
    assert tokens == 512 + 6  # 265 up to a multiple of 512, plus 6 dummy sequences (ceil(511 / 127) + 1)
    assert token_buckets.padded_token_count(torch.tensor([20, 9]), 512)[1] == 32
    firsts = token_buckets.first_appearances([[(512, 128)], [(512, 128), (1024, 128)], [(1024, 128)], [(512, 64)]])
    assert firsts == [{"batch": 1, "new_shapes": [[512, 128]]}, {"batch": 2, "new_shapes": [[1024, 128]]},
                      {"batch": 4, "new_shapes": [[512, 64]]}]


def test_communication_overlap_splits_nccls_time_into_beside_compute_and_alone():
    spans = [("gemm", 0, 4000), ("layernorm", 3000, 5000),  # compute 0-5 ms (overlapping kernels count once)
             ("ncclDevKernel_AllReduce", 4000, 7000), ("ncclDevKernel_AllReduce", 6000, 8000),  # NCCL 4-8 ms
             ("adam", 9000, 10000)]  # 2 steps profiled
    assert throughput.communication_overlap(spans, steps=2) == {
        "nccl_ms": 2.0, "nccl_beside_compute_ms": 0.5, "nccl_alone_ms": 1.5}
    assert throughput.communication_overlap([("gemm", 0, 10)], steps=1)["nccl_ms"] == 0


def test_report_names_the_two_runs_each_scaling_figure_compares(tmp_path):
    def speed_result(name, gpus, rate, overrides=()):
        (tmp_path / f"{name}.json").write_text(json.dumps(dict(
            model="mosaic_bert", gpus=gpus, overrides=list(overrides), speed_monitor_samples_per_s=rate)))

    speed_result("pretraining_speed_a_1gpu", 1, 1000.0)
    speed_result("pretraining_speed_a_2gpu", 2, 1800.0)
    speed_result("pretraining_speed_b_2gpu", 2, 1700.0, ["train_loader.num_workers=12"])  # no 1-GPU run of its name
    subprocess.run([sys.executable, SCRIPT, "report", "--results", str(tmp_path)], check=True)
    report = (tmp_path / "pretraining.md").read_text()
    assert ("pretraining_speed_a_2gpu vs pretraining_speed_a_1gpu: mosaic_bert, 2 GPUs give 1.80x the samples/s "
            "of one (90% scaling efficiency).") in report
    assert "| pretraining_speed_b_2gpu | 2 |  |  | 1,700 |" in report
    assert report.count("GPUs give") == 1


def test_host_wait_counter_names_the_code_that_called_the_waiting_line():
    def waiting_torch_line():  # stands in for torch.cuda.synchronize, whose own line is what torch reports
        warnings.warn("called a synchronizing CUDA operation", UserWarning)

    def caller():
        waiting_torch_line()

    counter = pretraining.HostWaitCounter(start=0, window=2)
    counter.start_recording()
    caller()
    warnings.warn("an unrelated warning")
    counter.stop_recording()
    assert counter.per_batch == 0.5
    (chain, count), = counter.where.items()
    assert count == 1
    innermost, next_out = chain.split(" < ")[:2]
    assert innermost.startswith("tests/test_benchmarks.py:") and next_out.startswith("tests/test_benchmarks.py:")
    assert int(innermost.split(":")[1]) == waiting_torch_line.__code__.co_firstlineno + 1
    assert int(next_out.split(":")[1]) == caller.__code__.co_firstlineno + 1
    assert warnings.showwarning is not counter.record  # put back when the window closes


def test_gpu_idle_gaps_charges_each_idle_stretch_to_the_kernel_that_ends_it():
    # Two steps: "gemm" overlaps "copy" (no gap between them), then the GPU idles 5 us before "norm" and
    # 20 us before the next step's "gemm"; the first span of the profile ends no gap.
    spans = [("gemm", 0, 10), ("copy", 5, 12), ("norm", 17, 20), ("gemm", 40, 50), ("copy", 45, 52),
             ("norm", 57, 60)]
    idle_ms, waits = throughput.gpu_idle_gaps(spans, steps=2)
    assert idle_ms == pytest.approx((5 + 20 + 5) / 1000 / 2)
    assert waits == [("gemm", pytest.approx(0.010), 0.5), ("norm", pytest.approx(0.005), 1.0)]


def test_kernel_sources_groups_launches_by_op_chain_and_shapes():
    # Over 2 steps: "mm" (under "backward") launches a GEMM and a memset each step; a Triton reduction is
    # launched once per step by two different ops with other shapes; a kernel not asked for is left out.
    from types import SimpleNamespace as NS

    cpu = torch.autograd.DeviceType.CPU
    backward = NS(name="backward", cpu_parent=None)

    def op(name, shapes, *kernels, parent=backward):
        return NS(name=name, cpu_parent=parent, input_shapes=shapes, device_type=cpu,
                  kernels=[NS(name=k, duration=us) for k, us in kernels])
    events = [op("aten::mm", [[8, 4], [4, 2]], ("gemm", 100.0), ("Memset (Device)", 2.0)) for _ in range(2)]
    events += [op("triton_red_fused_sum_1", [[64, 768], []], ("triton_red_fused_sum_1", 30.0)),
               op("triton_red_fused_sum_1", [[64, 2304]], ("triton_red_fused_sum_1", 50.0), ("other", 9.0))]
    rows = throughput.kernel_sources(NS(events=lambda: events), steps=2,
                                     kernels={"gemm", "Memset (Device)", "triton_red_fused_sum_1"})
    assert rows == [
        ("gemm", "aten::mm < backward", "[[8, 4], [4, 2]]", pytest.approx(0.1), 1.0),
        ("triton_red_fused_sum_1", "triton_red_fused_sum_1 < backward", "[[64, 2304]]", pytest.approx(0.025), 0.5),
        ("triton_red_fused_sum_1", "triton_red_fused_sum_1 < backward", "[[64, 768]]", pytest.approx(0.015), 0.5),
        ("Memset (Device)", "aten::mm < backward", "[[8, 4], [4, 2]]", pytest.approx(0.002), 1.0)]


def test_the_gemm_with_a_geglu_epilogue_computes_the_projection_and_the_geglu():
    """benchmarks/geglu_gemm_epilogue.py's kernel, under the Triton interpreter on tiny shapes (partial tiles
    in every dimension): its timings on the GPU mean something only if it computes the same thing."""
    import geglu_gemm_epilogue

    from src.fused_geglu import geglu_dropout_reference

    torch.manual_seed(0)
    x, weight = torch.randn(37, 40), torch.randn(2 * 24, 40)
    gated, out = geglu_gemm_epilogue.gemm_geglu(x, weight)
    torch.testing.assert_close(gated, x @ weight.T, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out, geglu_dropout_reference(x @ weight.T, 0.0), rtol=1e-5, atol=1e-4)
    assert geglu_gemm_epilogue.gemm_geglu(x, weight, epilogue=False)[1] is None
    _, dropped = geglu_gemm_epilogue.gemm_geglu(x, weight, p=0.5, seed=3)
    keep = dropped != 0
    assert 0.35 < keep.float().mean().item() < 0.65
    torch.testing.assert_close(dropped, geglu_dropout_reference(x @ weight.T, 0.5, keep), rtol=1e-5, atol=1e-4)


def test_a_variants_cublas_settings_hold_inside_it_and_are_restored_after():
    cuda = torch.backends.cuda
    before = (cuda.preferred_blas_library(), cuda.matmul.allow_bf16_reduced_precision_reduction)
    with throughput.variant_settings("the recipe, cuBLASLt, no reduced-precision reductions"):
        assert cuda.preferred_blas_library() == torch._C._BlasBackend.Cublaslt
        assert cuda.matmul.allow_bf16_reduced_precision_reduction is False
    assert (cuda.preferred_blas_library(), cuda.matmul.allow_bf16_reduced_precision_reduction) == before


def test_the_attention_sweep_times_the_training_batch_and_lists_each_kernels_fastest_configs():
    import attention

    assert attention.batch_lengths(128, "full", 32768, torch.Generator()) == [128] * 256
    assert attention.batch_lengths(128, "full", 300, torch.Generator()) == [128, 128, 44]
    base = {"head_dim": 64, "max_seqlen": 128, "mix": "full"}
    results = [dict(base, kernel="table", config={"h": 1}, fwd_ms=0.09, bwd_ms=0.26)]
    results += [dict(base, kernel="short_backward", config={"h": h}, fwd_ms=0.09, bwd_ms=ms, max_diff=0.0)
                for h, ms in ((1, 0.26), (2, 0.24), (3, 0.30), (4, 0.25))]
    summary = attention.tune_summary(results)
    assert "forward 0.0900 ms, backward 0.2600 ms" in summary
    listed = [line.split(" | ")[1] for line in summary.splitlines() if line.startswith("| short_backward")]
    assert listed == ["(2,)", "(4,)", "(1,)"]  # the three fastest backwards, fastest first
