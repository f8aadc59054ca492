#!/usr/bin/env bash
# Every GPU measurement of the project, in the two calls a device session affords, on a host with two
# H200s (device kind nvidia-h200-x2). Each call runs two lanes side by side, one per GPU; every step has
# its own time limit, so one that fails or hangs costs only its own numbers.
#
#   bash benchmarks/h200_session.sh kernels    # lane 0: attention kernel check + benchmark, Composer speed
#                                              # lane 1: Mosaic BERT check, training-throughput table + profile
#   bash benchmarks/h200_session.sh fusion     # lane 0: the training-throughput table (every variant) +
#                                              #   the profile of the regionally compiled recipe
#                                              # lane 1: Composer speed (as is, train_metrics=false, with
#                                              #   compile_regions), then the serial GLUE sweep alone
#   bash benchmarks/h200_session.sh throughput # lane 0: the throughput table (all variants), lane 1: the
#                                              #   GEGLU microbenchmark; then Composer speed on 1 and 2 GPUs
#   bash benchmarks/h200_session.sh training   # lanes 0+1: time to accuracy (HF | Mosaic at once),
#                                              # then both GPUs: DDP scaling, GLUE task parallelism
#   bash benchmarks/h200_session.sh final      # session 5's issue-6 figures: the throughput table + profile
#                                              #   and GEGLU microbenchmark; Composer speed (default guard |
#                                              #   before_update guard, side by side); Composer on 2 GPUs
#   bash benchmarks/h200_session.sh scaling    # Composer 1 and 2 GPUs alone; raw DDP 1/2 GPUs (+ profile,
#                                              #   bf16 gradients); the recipe's rows three times each
#   DATA=DIR bash benchmarks/h200_session.sh pretokenized   # Composer speed on pre-tokenized MDS in DIR
#   bash benchmarks/h200_session.sh feeding    # one GPU: instrumented Composer speed with / without
#                                              #   pin_memory; host ms per step of the main throughput rows
#   bash benchmarks/h200_session.sh optimizer  # session 6: Composer speed with the fused DecoupledAdamW and
#                                              #   with Composer's; throughput table with both (one GPU)
#   bash benchmarks/h200_session.sh encoder    # session 7, one GPU: the compiled encoder (Triton attention
#                                              #   inside the graph) checked against fp32, its throughput
#                                              #   and host ms beside the recipe's, Composer speed with it
#   bash benchmarks/h200_session.sh encoder_profile  # session 7: profiles of the recipe and the compiled
#                                              #   encoder, with Inductor's generated code
#   bash benchmarks/h200_session.sh tta_encoder  # session 7: Mosaic's time to accuracy with the compiled
#                                              #   encoder; fused GEGLU or Inductor's inside that graph
#   bash benchmarks/h200_session.sh tta_hf     # HF BERT's time to accuracy alone (pair it with tta_encoder)
#   bash benchmarks/h200_session.sh scaling_encoder  # nvidia-h200-x2: Composer and raw DDP on 1 and 2 GPUs
#                                              #   with the recipe as the YAML has it
#   bash benchmarks/h200_session.sh recipe_now # the issue's table rows and Composer's speed, recipe as it is
#   bash benchmarks/h200_session.sh scaling_diagnosis  # (x2) raw DDP on the padded mix; profiles on 1 and 2 GPUs
#   TAG=x OVERRIDES="k=v ..." bash benchmarks/h200_session.sh composer_2gpu  # (x2) Composer on 2 GPUs, overridden
#   bash benchmarks/h200_session.sh composer_scaling_profile  # (session 16, x2) Composer on 1 and 2 GPUs,
#                                              #   profiled; 2 GPUs with ddp_gradient_as_bucket_view
#   bash benchmarks/h200_session.sh composer_scaling_repeat  # (session 16, x2) the pair again, unprofiled,
#                                              #   with and without the ASCII tokenizer path
#   bash benchmarks/h200_session.sh ddp_graph_splits_synced  # (next, x2) every batch synced: whole graphs
#                                              #   against torch's split ones under DDP, profiled
#   bash benchmarks/h200_session.sh composer_scaling_recipe_batch  # (session 16, x2) 1 and 2 GPUs with the
#                                              #   recipe's batch of 4096 (microbatches of 128, then 256)
#   bash benchmarks/h200_session.sh probe8     # session 8: the compiled encoder's step with Inductor's C++
#                                              #   wrapper (host launch cost) beside the default, and
#                                              #   Composer speed with it
#   bash benchmarks/h200_session.sh tta8_mosaic  # session 8: Mosaic's time to accuracy (compiled encoder),
#                                              #   then Composer speed with the default Inductor wrapper
#   bash benchmarks/h200_session.sh tta8_hf    # session 8: HF BERT's time to accuracy in the next call,
#                                              #   then the compiled encoder's step under max-autotune
#   bash benchmarks/h200_session.sh encoder_profile8  # session 8: the compiled encoder's GPU time by
#                                              #   kernel category (after session 7's fp32-scale fix)
#   bash benchmarks/h200_session.sh session9   # src/trainer.py's Composer speed beside Composer's own
#                                              #   Trainer; the recipe's step timed back to back
#   bash benchmarks/h200_session.sh session9b  # src/trainer.py with no wait left; no-GLU and HF rows
#   bash benchmarks/h200_session.sh session9c  # async_loss checked on the GPU; Composer speed again
#   bash benchmarks/h200_session.sh session9d  # Composer speed, default | C++ wrapper; async_loss check
#   bash benchmarks/h200_session.sh session10  # tiled8 GEGLU vs tiled, residual LayerNorm costs
#   bash benchmarks/h200_session.sh session10c # attention short-kernel sweep; Composer speed (tiled8)
#   bash benchmarks/h200_session.sh session10d # tiled8 vs tiled in the step, interleaved twice
#   bash benchmarks/h200_session.sh session10e # the issue-6 table in one run
#   bash benchmarks/h200_session.sh cuda_graphs_probe  # GEGLU in a captured graph; the encoder in
#                                              #   reduce-overhead mode under TORCH_LOGS=cudagraphs
#   bash benchmarks/h200_session.sh session11  # CUDA graphs and bf16 hidden states in the recipe's step;
#                                              #   the CUDA-graph probe; the GEGLU GEMM epilogue
#   bash benchmarks/h200_session.sh session11b # bf16 hidden states: time to accuracy, Composer speed
#   bash benchmarks/h200_session.sh session11c # attention checks after the _locate change; idle profile
#   bash benchmarks/h200_session.sh session11d # Composer speed with cuda_graphs
#   bash benchmarks/h200_session.sh graphs_ab  # Composer speed without and with cuda_graphs
#   bash benchmarks/h200_session.sh session12  # graphs_ab, then a profile of who launches which kernel
#   bash benchmarks/h200_session.sh triton_dropout  # the hidden dropout's cheap mask, A/B + profile (session 13)
#   bash benchmarks/h200_session.sh session13_tta  # Mosaic's time to accuracy without / with that dropout
#   bash benchmarks/h200_session.sh session13_hf   # HF's time to accuracy; Composer speed of the recipe
#   bash benchmarks/h200_session.sh session13_seed # the Mosaic / HF pair again with seed 23
#   DATA=.gpu_data_v2 SEED=17 bash benchmarks/h200_session.sh tta_pair  # that pair, any data and seed
#   DATA=.gpu_data_v2 bash benchmarks/h200_session.sh session14_tta  # tta_pair, seed 17 (session 14)
#   DATA=.gpu_data_v2 bash benchmarks/h200_session.sh bf16_hidden  # Mosaic with bf16 hidden states: time to
#                                              #   accuracy, then the step A/B (session 14)
#   bash benchmarks/h200_session.sh inductor_reductions  # (session 17) the recipe under two Inductor settings: no gain
#   bash benchmarks/h200_session.sh session18_kernels  # the recipe under two cuBLAS settings; attention sweep timed from CUDA graphs
#   bash benchmarks/h200_session.sh session18_table    # short backward in query blocks; the issue's throughput table in one run
#   bash benchmarks/h200_session.sh session18_profile  # the recipe, no-GLU and HF SDPA + compile steps, measured and profiled
#   bash benchmarks/h200_session.sh session18_end_to_end  # Composer vs the raw loop and the dataloader alone, one GPU
#   bash benchmarks/h200_session.sh graphs_tta # time to accuracy with cuda_graphs; the probe (session 12)
#   bash benchmarks/h200_session.sh session12c # time-to-accuracy controls: recipe as is, bf16 hidden states
#   bash benchmarks/h200_session.sh idle_profile   # (session 11) which kernels the GPU idles waiting for
#   bash benchmarks/h200_session.sh geglu_gemm     # (session 11) GEMM with a GEGLU epilogue vs cuBLAS + tiled8
#   bash benchmarks/h200_session.sh gemm_autotune  # the compiled encoder with Inductor's GEGLU, GEMMs
#                                              #   autotuned with Triton templates (epilogue fusion)
#   bash benchmarks/h200_session.sh syncfree   # lane 0: throughput of the host-wait-free step, the tiled
#                                              #   GEGLU and HF + compile, with a profile; lane 1: GEGLU
#                                              #   microbenchmark, Composer speed with/without the NaN
#                                              #   guard; then Composer on 2 GPUs
#
# Steps are stopped with SIGABRT at their limit and PYTHONFAULTHANDLER is on, so a step that hangs
# leaves every thread's Python stack in its log.
#
# Needs the wheels of the packages the image lacks in .wheels-dir (default .whl; see docs/NOTES.md) and the
# synthetic data in DATA (default data, `python -m src.synthetic.prepare`). Results land in
# benchmarks/results/; logs and results are packed into $OUT/results.tgz after every step when OUT is set
# (so a call cut off by its time limit still returns what finished).
set -u
stage=${1:?usage: h200_session.sh kernels|training}
data=${DATA:-data}
tta_tag="$(basename "$data" | tr -d .)_seed${SEED:-17}"  # names the time-to-accuracy pairs' results
wheels=${WHEELS:-.whl}
logs=${LOGS:-/tmp/h200_logs}
mkdir -p "$logs" benchmarks/results
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false PYTHONFAULTHANDLER=1
if ! python3 -c "import composer, streaming, omegaconf" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheels"/*.whl \
    || { echo "installing the wheels from $wheels failed"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  # A wheel missing from the folder shows here, not minutes later in every step's log.
  python3 -c "import composer, streaming, omegaconf" \
    || { echo "composer does not import with the wheels from $wheels: fetch the missing one (docs/NOTES.md)"; exit 1; }
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, triton, transformers, composer; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, 'composer', composer.__version__)"

step() {  # step GPU LIMIT_S NAME COMMAND...: one measurement, its log in $logs/NAME.log
  local gpu=$1 limit=$2 name=$3; shift 3
  local started=$SECONDS
  CUDA_VISIBLE_DEVICES=$gpu timeout -s ABRT -k 20 "$limit" "$@" >"$logs/$name.log" 2>&1
  local status=$?
  echo "[$name] exit $status after $((SECONDS - started)) s (GPU $gpu, limit $limit s)"
  pack "$name"
  return $status
}
pack() {  # a snapshot of every result and log so far: what a call cut off by its time limit still returns
  [ -n "${OUT:-}" ] || return 0
  tar czf "$OUT/.results.$1.tgz" benchmarks/results "$logs" 2>/dev/null && mv -f "$OUT/.results.$1.tgz" "$OUT/results.tgz"
}
launcher="python3 -m composer.cli.launcher"
speed_1gpu() {  # speed_1gpu GPU PORT NAME OVERRIDES...: Composer speed of the Mosaic recipe on one GPU
  # (limit SPEED_LIMIT_S, default 130 s; a slow host needs ~190 s)
  local gpu=$1 port=$2 name=$3; shift 3
  step "$gpu" "${SPEED_LIMIT_S:-130}" "$name" $launcher -n 1 --master_port "$port" benchmarks/pretraining.py speed \
    --model mosaic_bert --data "$data" --steps 150 --raw_steps 40 --loader_batches 60 \
    --out "benchmarks/results/$name.json" "$@"
}
composer_speed() {  # composer_speed GPUS NAME ARGS...: Composer's speed alone (no dataloader or raw-loop
  # figures) of the Mosaic recipe on GPUS GPUs, 150 batches, limit 170 s; ARGS: more options, overrides
  local gpus=$1 name=$2; shift 2
  step "$(seq -s, 0 $((gpus - 1)))" 170 "$name" $launcher -n "$gpus" benchmarks/pretraining.py speed \
    --composer_only --model mosaic_bert --data "$data" --steps 150 --out "benchmarks/results/$name.json" "$@"
}
graphs_ab_runs() {  # Composer speed of the recipe without, then with cuda_graphs (limit SPEED_LIMIT_S each)
  speed_1gpu 0 29501 pretraining_speed_graphs_off
  speed_1gpu 0 29502 pretraining_speed_graphs_on model.model_config.cuda_graphs=true
}
tta_mosaic_1gpu() {  # tta_mosaic_1gpu NAME OUT_JSON OVERRIDES...: Mosaic's time to accuracy with the compiled
  # encoder for BUDGET_S seconds of training (default 120) on GPU 0, plus compilation and evaluations
  local name=$1 out=$2 budget=${BUDGET_S:-120}; shift 2
  step 0 $((budget + 180)) "$name" python3 benchmarks/pretraining.py accuracy --model mosaic_bert \
    --budget_s "$budget" --data "$data" --out "$out" \
    train_metrics=false model.model_config.compile_regions=true model.model_config.compile_encoder=true "$@"
}
tta_hf_1gpu() {  # tta_hf_1gpu NAME OUT_JSON OVERRIDES...: HF BERT's time to accuracy in its fastest
  # configuration (SDPA + torch.compile) for BUDGET_S seconds of training (default 100) on GPU 0
  local name=$1 out=$2 budget=${BUDGET_S:-100}; shift 2
  step 0 $((budget + 160)) "$name" python3 benchmarks/pretraining.py accuracy --model hf_bert --compile \
    --budget_s "$budget" --data "$data" --out "$out" train_metrics=false "$@"
}
tta_pair_runs() {  # Mosaic's, then HF's time to accuracy on DATA with seed SEED (default 17), 100 s each
  BUDGET_S=100 tta_mosaic_1gpu "tta_pair_mosaic_$tta_tag" \
    "benchmarks/results/tta_pair_mosaic_bert_$tta_tag.json" "seed=${SEED:-17}"
  tta_hf_1gpu "tta_pair_hf_$tta_tag" "benchmarks/results/tta_pair_hf_bert_$tta_tag.json" "seed=${SEED:-17}"
}

case $stage in
kernels)
  (
    step 0 150 check_attention python3 benchmarks/check_attention_gpu.py
    step 0 200 attention python3 benchmarks/attention.py
    step 0 150 speed_mosaic_1gpu $launcher -n 1 --master_port 29501 benchmarks/pretraining.py speed \
      --model mosaic_bert --data "$data" --out benchmarks/results/pretraining_speed_mosaic_1gpu.json
  ) &
  (
    step 1 120 mosaic_bert_check python3 benchmarks/mosaic_bert_gpu_check.py
    step 1 420 throughput python3 benchmarks/throughput.py --profile "Mosaic BERT (full recipe)" "HF BERT SDPA + compile"
  ) &
  wait
  ;;
fusion)
  (
    step 0 470 throughput python3 benchmarks/throughput.py --profile "Mosaic BERT (full recipe) + regional compile"
  ) &
  (
    speed() {  # speed NAME OVERRIDES...: Composer speed of the Mosaic recipe on one GPU
      local name=$1; shift
      step 1 110 "speed_mosaic_1gpu$name" $launcher -n 1 --master_port 29502 benchmarks/pretraining.py speed \
        --model mosaic_bert --data "$data" --steps 150 --raw_steps 40 --loader_batches 60 \
        --out "benchmarks/results/pretraining_speed_mosaic_1gpu$name.json" "$@"
    }
    speed ""
    speed _no_train_metrics train_metrics=false
    speed _regions_no_train_metrics train_metrics=false model.model_config.compile_regions=true
    step 1 150 glue_serial python3 benchmarks/glue_parallel.py --modes serial --max_duration 60ba --max_seq_len 128
  ) &
  wait
  ;;
throughput)
  # The issue-6 table in one run (lane 0) beside the GEGLU microbenchmark (lane 1); then Composer alone
  # on one GPU and on both, with the recipe switches in SPEED_ARGS.
  speed_args=${SPEED_ARGS:-train_metrics=false model.model_config.compile_regions=true}
  ( step 0 420 throughput python3 benchmarks/throughput.py \
      --profile "Mosaic BERT (full recipe) + regional compile + fused GEGLU" ) &
  ( step 1 150 geglu python3 benchmarks/geglu.py ) &
  wait
  # The fused GEGLU joins the Composer runs only if the microbenchmark ran it, and faster than Inductor.
  if python3 -c '
import json, sys
rows = {r["variant"]: r for r in json.load(open("benchmarks/results/geglu.json"))["rows"] if r["part"] == "feed-forward block"}
fused, inductor = rows.get("Triton kernel (tiled), torch.compile dynamic", {}), rows.get("torch.compile, dynamic", {})
sys.exit(0 if "ms" in fused and "ms" in inductor and fused["ms"] < inductor["ms"] else 1)'; then
    speed_args="$speed_args model.model_config.fused_geglu=true"
  fi
  echo "Composer speed runs with: $speed_args"
  step 0 90 speed_mosaic_1gpu_recipe $launcher -n 1 benchmarks/pretraining.py speed --model mosaic_bert \
    --data "$data" --steps 150 --raw_steps 40 --loader_batches 60 \
    --out benchmarks/results/pretraining_speed_mosaic_1gpu_recipe.json $speed_args
  step 0,1 90 speed_mosaic_2gpu_recipe $launcher -n 2 benchmarks/pretraining.py speed --composer_only \
    --model mosaic_bert --data "$data" --steps 150 \
    --out benchmarks/results/pretraining_speed_mosaic_2gpu_recipe.json $speed_args
  ;;
training)
  # Time to accuracy, both models at once (one per GPU), each in its fastest configuration and without the
  # per-batch training metrics; then DDP scaling (SPEED_ARGS as in the 'throughput' stage's one-GPU run);
  # then GLUE's task parallelism, parallel and serial.
  budget=${BUDGET_S:-120}
  speed_args=${SPEED_ARGS:-train_metrics=false model.model_config.compile_regions=true model.model_config.fused_geglu=true}
  step 0 $((budget + 100)) tta_hf python3 benchmarks/pretraining.py accuracy --model hf_bert --compile \
    --budget_s "$budget" --data "$data" --out benchmarks/results/time_to_accuracy_hf_bert.json train_metrics=false &
  step 1 $((budget + 100)) tta_mosaic python3 benchmarks/pretraining.py accuracy --model mosaic_bert \
    --budget_s "$budget" --data "$data" --out benchmarks/results/time_to_accuracy_mosaic_bert.json \
    train_metrics=false model.model_config.compile_regions=true &
  wait
  step 0,1 90 speed_mosaic_2gpu_recipe $launcher -n 2 benchmarks/pretraining.py speed --composer_only \
    --model mosaic_bert --data "$data" --steps 150 \
    --out benchmarks/results/pretraining_speed_mosaic_2gpu_recipe.json $speed_args
  step 0,1 200 glue_parallel python3 benchmarks/glue_parallel.py --modes parallel serial --max_duration 120ba \
    --max_seq_len 128
  ;;
syncfree)
  # Session 5: the step without host waits (the collator's counts), the tiled GEGLU candidate, and what
  # the Composer gap is made of. Lane 0: the variants that differ in exactly these, both paddings, and a
  # profile; lane 1: the GEGLU microbenchmark, then Composer speed (with the raw loop fed by the live
  # dataloader) with and without the NaN guard; then Composer on both GPUs.
  recipe="Mosaic BERT (full recipe) + regional compile + fused GEGLU"
  ( step 0 330 throughput_syncfree python3 benchmarks/throughput.py --out benchmarks/results/throughput_syncfree \
      --variants "HF BERT SDPA + compile" "$recipe" "$recipe (tiled kernel)" "$recipe, sizes from the GPU" \
      "Mosaic BERT no GLU + regional compile" --profile "$recipe" ) &
  (
    step 1 90 geglu python3 benchmarks/geglu.py
    step 1 130 speed_syncfree_1gpu $launcher -n 1 --master_port 29502 benchmarks/pretraining.py speed \
      --model mosaic_bert --data "$data" --steps 150 --raw_steps 40 --loader_batches 60 \
      --out benchmarks/results/pretraining_speed_syncfree_1gpu.json
    step 1 130 speed_syncfree_1gpu_no_guard $launcher -n 1 --master_port 29502 benchmarks/pretraining.py speed \
      --model mosaic_bert --data "$data" --steps 150 --raw_steps 40 --loader_batches 60 \
      --out benchmarks/results/pretraining_speed_syncfree_1gpu_no_guard.json stop_on_non_finite_loss=false
  ) &
  wait
  step 0,1 110 speed_syncfree_2gpu $launcher -n 2 benchmarks/pretraining.py speed --composer_only \
    --model mosaic_bert --data "$data" --steps 150 --out benchmarks/results/pretraining_speed_syncfree_2gpu.json
  ;;
final)
  # Session 5's figures for issue 6 in one call. Lane 0: the throughput table (the issue's variants and
  # the recipe's switches one at a time) and the recipe's profile; lane 1: the GEGLU microbenchmark. Then
  # Composer speed on both GPUs at once, one run each (the default NaN guard | the before_update one),
  # so both share the host alike; then Composer on both GPUs together (DDP).
  recipe="Mosaic BERT (full recipe) + regional compile + fused GEGLU"
  ( step 0 420 throughput python3 benchmarks/throughput.py --variants "HF BERT eager" "HF BERT SDPA" \
      "HF BERT SDPA + compile" "Mosaic BERT (full recipe)" "Mosaic BERT (full recipe) + regional compile" \
      "$recipe" "$recipe (flat kernel)" "$recipe, sizes from the GPU" "Mosaic BERT no GLU" \
      "Mosaic BERT no GLU + regional compile" --profile "$recipe" ) &
  ( step 1 120 geglu python3 benchmarks/geglu.py ) &
  wait
  speed_1gpu 0 29501 pretraining_speed_mosaic_1gpu_recipe &
  speed_1gpu 1 29502 pretraining_speed_mosaic_1gpu_guard_before_update stop_on_non_finite_loss=before_update &
  wait
  step 0,1 120 pretraining_speed_mosaic_2gpu_recipe $launcher -n 2 benchmarks/pretraining.py speed --composer_only \
    --model mosaic_bert --data "$data" --steps 150 --out benchmarks/results/pretraining_speed_mosaic_2gpu_recipe.json
  ;;
scaling)
  # Session 5, last call: what the 2-GPU scaling is made of. Composer on one GPU alone, then on two
  # (the host to itself each time); the raw DDP loop without Composer on one and two GPUs (with a profile
  # of rank 0, and with bf16 gradients); then the noisy 30%-padding rows of the table, three times each.
  step 0 120 pretraining_speed_mosaic_1gpu_alone $launcher -n 1 benchmarks/pretraining.py speed \
    --model mosaic_bert --data "$data" --steps 150 --raw_steps 40 --loader_batches 60 \
    --out benchmarks/results/pretraining_speed_mosaic_1gpu_alone.json
  step 0,1 110 pretraining_speed_mosaic_2gpu_alone $launcher -n 2 benchmarks/pretraining.py speed --composer_only \
    --model mosaic_bert --data "$data" --steps 150 --out benchmarks/results/pretraining_speed_mosaic_2gpu_alone.json
  rm -f benchmarks/results/ddp_scaling.jsonl
  step 0 90 ddp_1gpu python3 -m torch.distributed.run --nproc_per_node 1 benchmarks/ddp_scaling.py
  step 0,1 100 ddp_2gpu python3 -m torch.distributed.run --nproc_per_node 2 benchmarks/ddp_scaling.py --profile
  step 0,1 90 ddp_2gpu_bf16 python3 -m torch.distributed.run --nproc_per_node 2 benchmarks/ddp_scaling.py --bf16_gradients
  recipe="Mosaic BERT (full recipe) + regional compile + fused GEGLU"
  step 0 150 throughput_repeats python3 benchmarks/throughput.py --out benchmarks/results/throughput_repeats \
    --paddings 0.3 0.0 --repeats 3 --variants "$recipe" "$recipe (flat kernel)" "$recipe, sizes from the GPU"
  ;;
feeding)
  # Session 6, one GPU: where the fed step's host time goes (the instrumented speed runs: raw loop's host
  # ms to queue a step, time getting each batch, Composer's fetch time and host waits), with and without
  # pinned memory; then the host ms per step of the throughput table's main rows.
  speed_1gpu 0 29501 pretraining_speed_feeding_pin
  speed_1gpu 0 29501 pretraining_speed_feeding_no_pin train_loader.pin_memory=false
  recipe="Mosaic BERT (full recipe) + regional compile + fused GEGLU"
  step 0 200 throughput_host_ms python3 benchmarks/throughput.py --out benchmarks/results/throughput_host_ms \
    --variants "$recipe" "HF BERT SDPA + compile" "Mosaic BERT no GLU + regional compile"
  ;;
refresh)
  # Session 6, one GPU: time to accuracy of both recipes with the fused DecoupledAdamW (one after the
  # other), then an instrumented speed run that also profiles the raw loop fed by the live dataloader.
  budget=${BUDGET_S:-120}
  step 0 $((budget + 90)) tta_mosaic python3 benchmarks/pretraining.py accuracy --model mosaic_bert \
    --budget_s "$budget" --data "$data" --out benchmarks/results/time_to_accuracy_mosaic_bert.json \
    train_metrics=false model.model_config.compile_regions=true
  # HF's whole-model compile and its evaluations' recompilation take longer: 210 s cut it at 100 s of 120.
  step 0 $((budget + 150)) tta_hf python3 benchmarks/pretraining.py accuracy --model hf_bert --compile \
    --budget_s "$budget" --data "$data" --out benchmarks/results/time_to_accuracy_hf_bert.json train_metrics=false
  speed_1gpu 0 29501 pretraining_speed_refresh_1gpu --profile_live
  ;;
probe8)
  # Session 8: Composer's per-batch loss read drains the GPU queue, and the GPU then idles while the host
  # queues the next step (~30 ms of host time, most of it Inductor's Python wrapper launching kernels).
  # Inductor's C++ wrapper launches the same kernels from compiled C++: host ms and samples/s beside
  # the default, then Composer against the raw loop with it.
  v="Mosaic BERT (full recipe) + encoder compile + fused GEGLU"
  step 0 110 throughput_default python3 benchmarks/throughput.py --paddings 0.0 --variants "$v" \
    --out benchmarks/results/session8_throughput_default
  TORCHINDUCTOR_CPP_WRAPPER=1 step 0 200 throughput_cpp_wrapper python3 benchmarks/throughput.py \
    --paddings 0.0 --variants "$v" --out benchmarks/results/session8_throughput_cpp_wrapper
  TORCHINDUCTOR_CPP_WRAPPER=1 step 0 240 speed_cpp_wrapper $launcher -n 1 --master_port 29501 \
    benchmarks/pretraining.py speed --model mosaic_bert --data "$data" --steps 150 --raw_steps 40 \
    --loader_batches 60 --out benchmarks/results/pretraining_speed_session8_cpp_wrapper.json
  ;;
tta8_mosaic)
  # Session 8: both time-to-accuracy runs in one session (this call and tta8_hf right after), then
  # Composer speed with Inductor's default Python wrapper, to pair with probe8's C++-wrapper run.
  budget=${BUDGET_S:-120}
  step 0 $((budget + 180)) tta_mosaic python3 benchmarks/pretraining.py accuracy --model mosaic_bert \
    --budget_s "$budget" --data "$data" --out benchmarks/results/session8_time_to_accuracy_mosaic_bert.json \
    train_metrics=false model.model_config.compile_regions=true model.model_config.compile_encoder=true
  step 0 240 speed_default $launcher -n 1 --master_port 29501 \
    benchmarks/pretraining.py speed --model mosaic_bert --data "$data" --steps 150 --raw_steps 40 \
    --loader_batches 60 --out benchmarks/results/pretraining_speed_session8_default.json
  ;;
tta8_hf)
  # Session 8: HF BERT's run to pair with tta8_mosaic's, then whether Inductor's max-autotune (Triton GEMM
  # templates with fused epilogues, benchmarked against cuBLAS) speeds up the compiled encoder's step.
  budget=${BUDGET_S:-120}
  step 0 $((budget + 160)) tta_hf python3 benchmarks/pretraining.py accuracy --model hf_bert --compile \
    --budget_s "$budget" --data "$data" --out benchmarks/results/session8_time_to_accuracy_hf_bert.json \
    train_metrics=false
  TORCHINDUCTOR_MAX_AUTOTUNE=1 step 0 200 throughput_max_autotune python3 benchmarks/throughput.py \
    --paddings 0.0 --variants "Mosaic BERT (full recipe) + encoder compile + fused GEGLU" \
    --out benchmarks/results/session8_throughput_max_autotune
  ;;
encoder_profile8)
  # Session 8: where the compiled encoder's step spends its GPU time now (session 7's profile of it
  # predates the fp32 fix of the attention scale), for the MFU gap's breakdown.
  encoder="Mosaic BERT (full recipe) + encoder compile + fused GEGLU"
  step 0 200 throughput_profile python3 benchmarks/throughput.py --paddings 0.0 --variants "$encoder" \
    --profile "$encoder" --out benchmarks/results/session8_throughput_encoder_profile
  ;;
session10)
  # Session 10: the tiled8 GEGLU kernels (eight dropout values per Philox call, no division) against the
  # tiled ones of sessions 5-9, alone and in the recipe's step (same call, full length, with a profile);
  # and what the residual + dropout + LayerNorm kernels Inductor makes cost (dropout? float32 residual?).
  step 0 120 geglu python3 benchmarks/geglu.py --out benchmarks/results/session10_geglu
  TORCH_LOGS=output_code TORCH_LOGS_OUT="$logs/residual_layernorm_code.txt" step 0 100 residual_layernorm \
    python3 benchmarks/residual_layernorm.py --out benchmarks/results/session10_residual_layernorm
  step 0 330 throughput_geglu python3 benchmarks/throughput.py --paddings 0.0 \
    --variants "Mosaic BERT (full recipe) + encoder compile + fused GEGLU" \
    "Mosaic BERT (full recipe) + encoder compile + fused GEGLU (tiled kernel)" \
    --profile "Mosaic BERT (full recipe) + encoder compile + fused GEGLU" \
    --out benchmarks/results/session10_throughput_geglu
  ;;
session10c)
  # Session 10, third call: the short attention kernels (max_seqlen <= 128, the recipe's) swept wider
  # than before (16 warps, deeper pipelines); Composer end to end with the tiled8 GEGLU (the recipe YAML).
  step 0 240 attention_tune python3 benchmarks/attention.py --tune --max-seqlens 128 \
    --tune-out benchmarks/results/session10_attention_tune_128.json
  step 0 240 speed_session10 $launcher -n 1 --master_port 29501 \
    benchmarks/pretraining.py speed --model mosaic_bert --data "$data" --steps 150 --raw_steps 40 \
    --loader_batches 60 --out benchmarks/results/pretraining_speed_session10.json
  ;;
session10d)
  # Session 10, last call: the tiled8 GEGLU against the tiled one in the recipe's step, twice each,
  # interleaved (the recipe's rate varied by 3.5% between this session's first two calls).
  step 0 480 throughput_geglu_repeats python3 benchmarks/throughput.py --paddings 0.0 --repeats 2 \
    --variants "Mosaic BERT (full recipe) + encoder compile + fused GEGLU" \
    "Mosaic BERT (full recipe) + encoder compile + fused GEGLU (tiled kernel)" \
    --out benchmarks/results/session10_throughput_geglu_repeats
  ;;
session10e)
  # Session 10, closing call: the issue-6 table in one run (the recipe with the tiled8 GEGLU, no GLU,
  # HF's best), full length first, then 30% padding.
  step 0 500 throughput_table python3 benchmarks/throughput.py --paddings 0.0 0.3 \
    --variants "Mosaic BERT (full recipe) + encoder compile + fused GEGLU" \
    "Mosaic BERT no GLU + encoder compile" "HF BERT SDPA + compile" \
    --out benchmarks/results/session10_throughput_table
  ;;
session11)
  # Session 11: CUDA graphs for the compiled encoder now that Inductor no longer counts cu_seqlens as
  # written by the attention kernels (session 10's "mutated inputs" skip), and bf16 hidden states
  # (config low_precision_hidden_states), each against the recipe in one run; the GEMM-epilogue question.
  recipe="Mosaic BERT (full recipe) + encoder compile + fused GEGLU"
  step 0 300 throughput_graphs python3 benchmarks/throughput.py --paddings 0.0 \
    --variants "$recipe" "$recipe + CUDA graphs" "$recipe, bf16 hidden states" \
    "$recipe + CUDA graphs, bf16 hidden states" --out benchmarks/results/session11_throughput_graphs
  TORCH_LOGS=+cudagraphs step 0 150 cuda_graphs_probe python3 benchmarks/cuda_graphs_probe.py
  step 0 120 geglu_gemm_epilogue python3 benchmarks/geglu_gemm_epilogue.py
  ;;
session11b)
  # Session 11: does bf16 hidden states (config low_precision_hidden_states) train as well? Mosaic's
  # time-to-accuracy run with it (MaskedAccuracy per batch against session 8's run without it, same data
  # and seed); Composer end to end with it.
  tta_mosaic_1gpu tta_mosaic_bf16_hidden benchmarks/results/session11_time_to_accuracy_mosaic_bert_bf16_hidden.json \
    model.model_config.low_precision_hidden_states=true
  step 0 240 speed_session11 $launcher -n 1 --master_port 29501 \
    benchmarks/pretraining.py speed --model mosaic_bert --data "$data" --steps 150 --raw_steps 40 \
    --loader_batches 60 --out benchmarks/results/pretraining_speed_session11_bf16_hidden.json \
    model.model_config.low_precision_hidden_states=true
  ;;
session11c)
  # Session 11, last call: the attention kernels after the `_locate` change (store addresses loaded in the
  # kernels) checked on the GPU, alone and inside the compiled encoder; then where the recipe's step
  # leaves the GPU idle (CUDA graphs, which remove launch gaps, gained nothing in session11).
  step 0 150 check_attention python3 benchmarks/check_attention_gpu.py \
    --out benchmarks/results/attention_gpu_check_session11.txt
  step 0 200 mosaic_bert_check python3 benchmarks/mosaic_bert_gpu_check.py \
    --out benchmarks/results/mosaic_bert_gpu_check_session11.json
  step 0 240 throughput_idle python3 benchmarks/throughput.py --paddings 0.0 \
    --variants "Mosaic BERT (full recipe) + encoder compile + fused GEGLU" \
    --profile "Mosaic BERT (full recipe) + encoder compile + fused GEGLU" --out benchmarks/results/session11_idle_profile
  ;;
session11d)
  # Session 11: Composer end to end with the config's cuda_graphs (token count padded to multiples of 512,
  # the compiled encoder replayed as CUDA graphs): Composer against the raw loop, both with graphs.
  # Session 11's second call ran on a slow host (Composer 0.75 of the raw loop without graphs); graphs
  # halve the host's time per step.
  step 0 300 speed_session11_cuda_graphs $launcher -n 1 --master_port 29501 \
    benchmarks/pretraining.py speed --model mosaic_bert --data "$data" --steps 150 --raw_steps 40 \
    --loader_batches 60 --out benchmarks/results/pretraining_speed_session11_cuda_graphs.json \
    model.model_config.cuda_graphs=true
  TORCH_LOGS=cudagraphs step 0 150 cuda_graphs_probe python3 benchmarks/cuda_graphs_probe.py
  ;;
graphs_ab)
  # Should the recipe turn on cuda_graphs (session 12: yes)? Composer end to end without and with it, same call (each
  # run ~190 s on a slow host); the dataloader figure of each run also shows session 11's tokenizer change.
  SPEED_LIMIT_S=280 graphs_ab_runs
  ;;
session12)
  # Session 12, first call: graphs_ab (above), then the recipe's step profiled with the launching op and
  # input shapes of its top kernels, memsets and sum reductions (which reductions are bias gradients, where
  # the 166 memsets per step come from).
  SPEED_LIMIT_S=230 graphs_ab_runs
  step 0 200 throughput_sources python3 benchmarks/throughput.py --paddings 0.0 --quick \
    --variants "Mosaic BERT (full recipe) + encoder compile + fused GEGLU" \
    --profile "Mosaic BERT (full recipe) + encoder compile + fused GEGLU" --out benchmarks/results/session12_sources
  ;;
triton_dropout)
  # Session 13: the hidden dropout's mask from src/fused_dropout.py (config triton_hidden_dropout) against
  # Inductor's dropout: the recipe's step and the no-GLU model's, full-length batches, in one run; then
  # the recipe's step profiled with it (does the attention-output LayerNorm drop from ~0.21 to ~0.08 ms
  # per layer?). Time to accuracy with it is the next call's (learning unchanged?). Untimed: trim the
  # variants if the first step runs out of time.
  python3 -c "import inspect, torch.utils.data.dataloader as d; c = d._MultiProcessingDataLoaderIter
print(inspect.getsource(c._shutdown_workers)); print(inspect.getsource(c._clean_up_worker))" \
    >"$logs/torch_dataloader_shutdown.log" 2>&1  # the exit hang's frame (docs/NOTES.md): torch 2.11's code
  step 0 400 throughput_triton_dropout python3 benchmarks/throughput.py --paddings 0.0 \
    --variants "HF BERT SDPA + compile" "Mosaic BERT (full recipe) + encoder compile + fused GEGLU" \
    "Mosaic BERT (full recipe) + encoder compile + fused GEGLU, Triton hidden dropout" \
    "Mosaic BERT no GLU + encoder compile" "Mosaic BERT no GLU + encoder compile, Triton hidden dropout" \
    --out benchmarks/results/session13_throughput_triton_dropout
  step 0 150 profile_triton_dropout python3 benchmarks/throughput.py --paddings 0.0 --quick \
    --variants "Mosaic BERT (full recipe) + encoder compile + fused GEGLU, Triton hidden dropout" \
    --profile "Mosaic BERT (full recipe) + encoder compile + fused GEGLU, Triton hidden dropout" \
    --out benchmarks/results/session13_profile_triton_dropout
  ;;
inductor_reductions)
  # (session 17: neither helps) The recipe's step under two Inductor settings for its generated reductions (coordinate-descent
  # tuning of block sizes; no split reductions), interleaved twice with the recipe as it is, full length.
  # A setting that wins by more than the repeats' spread goes into the model config next.
  recipe="Mosaic BERT (full recipe) + encoder compile + fused GEGLU, Triton hidden dropout, bf16 hidden states"
  step 0 480 throughput_inductor_reductions python3 benchmarks/throughput.py --paddings 0.0 --repeats 2 \
    --variants "$recipe" "$recipe, Inductor coordinate descent" "$recipe, no split reductions" \
    --out benchmarks/results/throughput_inductor_reductions
  ;;
session18_kernels)
  # Session 18, one H200: (1) the recipe's step under two cuBLAS settings (BLAS_OPTIONS in throughput.py:
  # cuBLASLt; no reduced-precision split-K reductions), interleaved twice with the recipe as it is, full
  # length: whether the memset in front of every GEMM (~0.9 ms of idle per step, session 12) goes away.
  # (2) The attention kernels at max_seqlen 128 swept again, each config's kernels alone replayed from a
  # CUDA graph (the earlier sweeps timed the host's launches), on full-length and uniform batches, the
  # block kernels at 128 included.
  recipe="Mosaic BERT (full recipe) + encoder compile + fused GEGLU, Triton hidden dropout, bf16 hidden states"
  step 0 330 throughput_blas python3 benchmarks/throughput.py --paddings 0.0 --repeats 2 \
    --variants "$recipe" "$recipe, cuBLASLt" "$recipe, no reduced-precision reductions" \
    --out benchmarks/results/throughput_blas
  step 0 230 attention_tune python3 benchmarks/attention.py --tune --max-seqlens 128 --tune-mixes full uniform \
    --tune-out benchmarks/results/session18_attention_tune_128.json
  ;;
session18_table)
  # Session 18, one H200: (1) the short backward with its queries in blocks of 32 or 64 rows
  # (ShortKernelConfig.query_block), swept like session18_kernels' sweep; (2) the issue's throughput table
  # in one run with the attention configs of that sweep: HF BERT eager, SDPA, SDPA + compile; Mosaic BERT
  # full recipe and without GLU, each as the recipe YAML runs it (compiled encoder) and eager; full-length
  # and 30%-padding batches.
  step 0 110 attention_tune_query_blocks python3 benchmarks/attention.py --tune --max-seqlens 128 \
    --tune-mixes full uniform --tune-kernels short_backward \
    --tune-out benchmarks/results/session18_attention_tune_query_blocks.json
  recipe="Mosaic BERT (full recipe) + encoder compile + fused GEGLU, Triton hidden dropout, bf16 hidden states"
  no_glu="Mosaic BERT no GLU + encoder compile, Triton hidden dropout, bf16 hidden states"
  step 0 460 throughput_session18 python3 benchmarks/throughput.py --paddings 0.0 0.3 \
    --variants "HF BERT eager" "HF BERT SDPA" "HF BERT SDPA + compile" "$recipe" "$no_glu" \
    "Mosaic BERT (full recipe)" "Mosaic BERT no GLU" --out benchmarks/results/throughput_session18
  ;;
session18_profile)
  # Session 18, one H200: where the GPU time goes now, for the three rows the targets compare (the recipe,
  # Mosaic without GLU, HF BERT SDPA + compile), full-length batches, each measured then profiled.
  recipe="Mosaic BERT (full recipe) + encoder compile + fused GEGLU, Triton hidden dropout, bf16 hidden states"
  no_glu="Mosaic BERT no GLU + encoder compile, Triton hidden dropout, bf16 hidden states"
  step 0 500 throughput_session18_profiled python3 benchmarks/throughput.py --paddings 0.0 \
    --variants "$recipe" "$no_glu" "HF BERT SDPA + compile" --profile "$recipe" "$no_glu" "HF BERT SDPA + compile" \
    --out benchmarks/results/throughput_session18_profiled
  ;;
session18_end_to_end)
  # Session 18, one H200: Composer's speed of the recipe against the raw loop, and the dataloader alone
  # (the YAML's 8 workers), on a one-GPU host with the attention configs of session 18.
  SPEED_LIMIT_S=220 speed_1gpu 0 29501 pretraining_speed_s18_1gpu
  ;;
tta_pair|session14_tta)
  # Mosaic's and HF's time to accuracy, 100 s of training each, the recipe as it is, seed SEED (default 17),
  # in one call (~450 s of steps, plus start-up). With DATA=.gpu_data_v2 (5,000 validation documents,
  # docs/NOTES.md) each evaluation reads 19 batches instead of 3, which steadies the crossing of Mosaic's
  # curve with HF's last accuracy (3-batch noise moved it ~6 s in session 13; 19 batches: the seeds agree
  # within ~0.002, session 14). Results are named by the data folder and the seed; report them with
  # `pretraining.py report --tta_prefix tta_pair_`.
  # session14_tta was session 14's first call, this pair with seed 17 (its third run, cut off by the
  # call's limit, became stage bf16_hidden).
  tta_pair_runs
  ;;
bf16_hidden)
  # Session 14, after session14_tta's pair (same data and seed, SEED default 17): Mosaic's time to
  # accuracy with bf16 hidden states between layers, then the recipe's step without and with them,
  # interleaved twice, full length.
  BUDGET_S=100 tta_mosaic_1gpu "tta_pair_mosaic_bf16_hidden_$tta_tag" \
    "benchmarks/results/tta_pair_mosaic_bert_bf16_hidden_$tta_tag.json" "seed=${SEED:-17}" \
    model.model_config.low_precision_hidden_states=true
  recipe="Mosaic BERT (full recipe) + encoder compile + fused GEGLU, Triton hidden dropout"
  step 0 200 throughput_bf16_hidden python3 benchmarks/throughput.py --paddings 0.0 --repeats 2 \
    --variants "$recipe" "$recipe, bf16 hidden states" --out benchmarks/results/session14_throughput_bf16_hidden
  ;;
session13_tta)
  # Session 13, second call: Mosaic's time to accuracy as the recipe is and with triton_hidden_dropout
  # (does the mask from src/fused_dropout.py learn alike?), 100 s of training each; with dynamic masking
  # (session 12) and the exit fix of src/trainer.py (`stop_workers_at_exit`: the ~80 s each run sat after
  # its last line is gone if the step ends within seconds of "Final eval").
  BUDGET_S=100 tta_mosaic_1gpu tta_mosaic_session13_baseline \
    benchmarks/results/session13_time_to_accuracy_mosaic_bert_baseline.json
  BUDGET_S=100 tta_mosaic_1gpu tta_mosaic_session13_triton_dropout \
    benchmarks/results/session13_time_to_accuracy_mosaic_bert_triton_dropout.json \
    model.model_config.triton_hidden_dropout=true
  ;;
session13_hf)
  # Session 13, third call: HF BERT's time to accuracy (its fastest configuration: SDPA + torch.compile)
  # for the same 100 s, to pair with session13_tta's Mosaic runs (same session, same code, same masks).
  tta_hf_1gpu tta_hf_session13 benchmarks/results/session13_time_to_accuracy_hf_bert.json
  # Composer against the raw loop, and the dataloader, with the recipe as it now is (cuda_graphs and
  # triton_hidden_dropout on)
  speed_1gpu 0 29501 pretraining_speed_session13_recipe
  ;;
session13_seed)
  # Session 13, fourth call: the same pair with another seed (initial weights, data order, masks), to see how
  # far "the time Mosaic needs to reach HF's final accuracy" moves with the seed alone; the recipe as it
  # now is (triton_hidden_dropout on).
  BUDGET_S=100 tta_mosaic_1gpu tta_mosaic_session13_seed23 \
    benchmarks/results/session13_time_to_accuracy_mosaic_bert_seed23.json seed=23
  tta_hf_1gpu tta_hf_session13_seed23 benchmarks/results/session13_time_to_accuracy_hf_bert_seed23.json seed=23
  ;;
session12c)
  # Session 12, third call: same-code controls for graphs_tta's run. Time to accuracy as the recipe is
  # (cuda_graphs off) and with bf16 hidden states (whose session-11 verdict compared against runs of older
  # code with other MLM masks on the evaluation batches), 100 s of training each.
  BUDGET_S=100 tta_mosaic_1gpu tta_mosaic_session12_baseline \
    benchmarks/results/session12_time_to_accuracy_mosaic_bert_baseline.json
  BUDGET_S=100 tta_mosaic_1gpu tta_mosaic_session12_bf16_hidden \
    benchmarks/results/session12_time_to_accuracy_mosaic_bert_bf16_hidden.json \
    model.model_config.low_precision_hidden_states=true
  ;;
graphs_tta)
  # cuda_graphs with evaluation during training (session 12): Mosaic's time-to-accuracy run with it (its
  # control, the same code without graphs, is session12c's), then the probe at INFO logging.
  tta_mosaic_1gpu tta_mosaic_graphs benchmarks/results/session12_time_to_accuracy_mosaic_bert_cuda_graphs.json \
    model.model_config.cuda_graphs=true
  TORCH_LOGS=cudagraphs step 0 150 cuda_graphs_probe python3 benchmarks/cuda_graphs_probe.py
  ;;
geglu_gemm)
  # Is GEGLU worth fusing into the up-projection's GEMM (docs/NOTES.md, next GPU work 2)? cuBLAS + the
  # tiled8 kernel against a Triton GEMM with the GEGLU in its epilogue, forward only, recipe sizes.
  step 0 200 geglu_gemm_epilogue python3 benchmarks/geglu_gemm_epilogue.py
  ;;
idle_profile)
  # Where the recipe's step leaves the GPU idle (~3.8 ms of 58.9 in session 10): the profile's new table
  # of the kernels the GPU waited for, recorded with the GPU's activity only. Decides what CUDA graphs
  # (or fewer launches) would buy before anyone builds them.
  step 0 240 throughput_idle python3 benchmarks/throughput.py --paddings 0.0 \
    --variants "Mosaic BERT (full recipe) + encoder compile + fused GEGLU" \
    --profile "Mosaic BERT (full recipe) + encoder compile + fused GEGLU" --out benchmarks/results/idle_profile
  ;;
cuda_graphs_probe)
  # What keeps the compiled encoder from CUDA graphs (Inductor: "mutated inputs"), and whether the fused
  # GEGLU draws a new mask at each replay of a captured graph (session 10, docs/NOTES.md).
  TORCH_LOGS=cudagraphs step 0 180 cuda_graphs_probe python3 benchmarks/cuda_graphs_probe.py
  ;;
session9)
  # Session 9: src/trainer.py (Composer's loop without its per-batch GPU waits, the loss read one batch
  # late) against the raw loop, and Composer's own Trainer in the same call; then the recipe's step timed
  # back to back (throughput.py's new timing, first run), full length.
  step 0 240 speed_session9 $launcher -n 1 --master_port 29501 \
    benchmarks/pretraining.py speed --model mosaic_bert --data "$data" --steps 150 --raw_steps 40 \
    --loader_batches 60 --out benchmarks/results/pretraining_speed_session9.json
  step 0 170 speed_session9_composer_trainer $launcher -n 1 --master_port 29502 \
    benchmarks/pretraining.py speed --model mosaic_bert --data "$data" --steps 150 --composer_only \
    --composer_trainer --out benchmarks/results/pretraining_speed_session9_composer_trainer.json
  step 0 150 throughput_recipe python3 benchmarks/throughput.py --paddings 0.0 \
    --variants "Mosaic BERT (full recipe) + encoder compile + fused GEGLU" \
    --out benchmarks/results/session9_throughput_recipe
  ;;
session9b)
  # Session 9, second call: src/trainer.py with no wait left in a batch (the batch size summed on the
  # host too) against the raw loop; then the no-GLU and HF rows of the issue-6 ratios, timed back to back.
  step 0 240 speed_session9b $launcher -n 1 --master_port 29501 \
    benchmarks/pretraining.py speed --model mosaic_bert --data "$data" --steps 150 --raw_steps 40 \
    --loader_batches 60 --out benchmarks/results/pretraining_speed_session9b.json
  step 0 330 throughput_ratios python3 benchmarks/throughput.py \
    --variants "Mosaic BERT no GLU + encoder compile" "HF BERT SDPA + compile" \
    --out benchmarks/results/session9_throughput_ratios
  ;;
session9c)
  # Session 9, third call: async_loss on the GPU (same losses one step later, same checkpoints and
  # evaluations, no wait in a batch), then Composer speed again, to see how much it moves between calls.
  step 0 240 async_loss_gpu_check python3 benchmarks/async_loss_gpu_check.py --data "$data"
  step 0 240 speed_session9c $launcher -n 1 --master_port 29501 \
    benchmarks/pretraining.py speed --model mosaic_bert --data "$data" --steps 150 --raw_steps 40 \
    --loader_batches 60 --out benchmarks/results/pretraining_speed_session9c.json
  ;;
session9d)
  # Session 9, fourth call: with no wait left in Composer's batch, the host's time to queue a step decides
  # whether Composer keeps up with the GPU (25.9-36.8 ms in the raw loop in this session's calls, against a
  # 43.4 ms GPU step). Inductor's C++ wrapper queues the compiled encoder faster: Composer speed with the
  # default and with it, in one call; then async_loss checked on the GPU again (waits in trainer.py only).
  step 0 230 speed_session9d_default $launcher -n 1 --master_port 29501 \
    benchmarks/pretraining.py speed --model mosaic_bert --data "$data" --steps 150 --raw_steps 40 \
    --loader_batches 60 --out benchmarks/results/pretraining_speed_session9d_default.json
  TORCHINDUCTOR_CPP_WRAPPER=1 step 0 240 speed_session9d_cpp_wrapper $launcher -n 1 --master_port 29502 \
    benchmarks/pretraining.py speed --model mosaic_bert --data "$data" --steps 150 --raw_steps 40 \
    --loader_batches 60 --out benchmarks/results/pretraining_speed_session9d_cpp_wrapper.json
  step 0 150 async_loss_gpu_check python3 benchmarks/async_loss_gpu_check.py --data "$data"
  ;;
gemm_autotune)
  # Next MFU step (docs/NOTES.md): 60% needs the element-wise work inside the GEMMs. Inductor fuses
  # pointwise epilogues only into its own Triton GEMM templates, and only for its own ops: the compiled
  # encoder with Inductor's GEGLU (not the fused kernel, a custom op it cannot fuse), GEMMs autotuned
  # between cuBLAS and Triton templates. Compare with the recipe row (4,273 samples/s, session 9).
  TORCHINDUCTOR_MAX_AUTOTUNE_GEMM=1 TORCHINDUCTOR_MAX_AUTOTUNE_GEMM_BACKENDS=ATEN,TRITON \
    step 0 450 throughput_gemm_autotune python3 benchmarks/throughput.py --paddings 0.0 \
    --variants "Mosaic BERT (full recipe) + encoder compile" --profile "Mosaic BERT (full recipe) + encoder compile" \
    --out benchmarks/results/gemm_autotune
  ;;
encoder)
  # Session 7: compile_encoder puts all 12 layers, the Triton attention included (a torch.library
  # triton_op now), in one compiled graph. Is it right (fp32 reference, graph count), how fast is the
  # step and how long does the host take to queue it, and what does Composer get with it?
  step 0 200 gpu_check python3 benchmarks/mosaic_bert_gpu_check.py \
    --out benchmarks/results/mosaic_bert_gpu_check_session7.json
  recipe="Mosaic BERT (full recipe) + regional compile + fused GEGLU"
  step 0 360 throughput python3 benchmarks/throughput.py --out benchmarks/results/throughput_session7 \
    --variants "$recipe" "Mosaic BERT (full recipe) + encoder compile + fused GEGLU" \
    "Mosaic BERT no GLU + encoder compile" "HF BERT SDPA + compile"
  step 0 240 speed_encoder $launcher -n 1 --master_port 29501 benchmarks/pretraining.py speed \
    --model mosaic_bert --data "$data" --steps 150 --raw_steps 40 --loader_batches 60 \
    --out benchmarks/results/pretraining_speed_encoder_1gpu.json model.model_config.compile_encoder=true
  ;;
encoder_profile)
  # Session 7: the compiled encoder queued its step in 29 ms instead of 46 but its GPU time grew from 63.5
  # to 70.8 ms: the two variants' kernels side by side, and the code Inductor generated for each.
  recipe="Mosaic BERT (full recipe) + regional compile + fused GEGLU"
  encoder="Mosaic BERT (full recipe) + encoder compile + fused GEGLU"
  TORCH_LOGS=output_code TORCH_LOGS_OUT="$logs/output_code.txt" step 0 300 throughput_profile \
    python3 benchmarks/throughput.py --out benchmarks/results/throughput_session7_profile_call \
    --paddings 0.0 --variants "$recipe" "$encoder" --profile "$recipe" "$encoder"
  gzip -f "$logs/output_code.txt"; pack output_code
  ;;
tta_encoder)
  # Session 7, what the device time left allowed: Mosaic BERT's time to accuracy with the compiled encoder
  # (HF's run of session 6, same data and code path, is the reference), then whether the fused GEGLU
  # kernel still pays inside the one compiled graph.
  # Its 210 s limit stopped the Mosaic run at 102 s of 120 (compiling the training and evaluation graphs
  # takes ~60 s more than the per-layer regions): it now gets 300 s.
  budget=${BUDGET_S:-120}
  step 0 $((budget + 180)) tta_mosaic python3 benchmarks/pretraining.py accuracy --model mosaic_bert \
    --budget_s "$budget" --data "$data" --out benchmarks/results/session7_time_to_accuracy_mosaic_bert.json \
    train_metrics=false model.model_config.compile_regions=true model.model_config.compile_encoder=true
  step 0 150 throughput_geglu python3 benchmarks/throughput.py --out benchmarks/results/throughput_session7_geglu \
    --variants "Mosaic BERT (full recipe) + encoder compile + fused GEGLU" "Mosaic BERT (full recipe) + encoder compile"
  ;;
tta_hf)
  # HF BERT's time to accuracy alone (HF + compile needs ~270 s with BUDGET_S=120): run it in the call
  # beside `tta_encoder`'s Mosaic run, so that both curves come from one session.
  budget=${BUDGET_S:-120}
  step 0 $((budget + 160)) tta_hf python3 benchmarks/pretraining.py accuracy --model hf_bert --compile \
    --budget_s "$budget" --data "$data" --out benchmarks/results/session8_time_to_accuracy_hf_bert.json \
    train_metrics=false
  ;;
scaling_encoder)
  # Two GPUs (nvidia-h200-x2) with the recipe as the YAML has it (compiled encoder, CUDA graphs, Triton
  # dropout, bf16 hidden states, fused optimizer): Composer on one GPU, then on two, then the raw DDP loop
  # on one and two (its own results file: ddp_scaling.jsonl holds session 5's). Limits add to 540 s.
  step 0 170 pretraining_speed_encoder_1gpu_x2host $launcher -n 1 benchmarks/pretraining.py speed \
    --model mosaic_bert --data "$data" --steps 150 --raw_steps 40 --loader_batches 60 \
    --out benchmarks/results/pretraining_speed_encoder_1gpu_x2host.json
  composer_speed 2 pretraining_speed_encoder_2gpu_x2host
  rm -f benchmarks/results/ddp_scaling_recipe.jsonl
  for gpus in 1 2; do
    step "$(seq -s, 0 $((gpus - 1)))" 100 "ddp_${gpus}gpu" python3 -m torch.distributed.run \
      --nproc_per_node "$gpus" benchmarks/ddp_scaling.py --out benchmarks/results/ddp_scaling_recipe.jsonl
  done
  ;;
scaling_diagnosis)
  # Session 15, second two-GPU call, after scaling_encoder (raw DDP 1.89x on full-length batches, Composer
  # 1.76x on the corpus, whose samples average 94 real tokens): raw DDP on the 30%-padding mix (shorter
  # steps, the same all-reduce) on one and two GPUs, then both full-length with the profile (NCCL's share
  # and what the compute kernels lose beside it). Appends to ddp_scaling_recipe.jsonl. Limits add to 440 s.
  for run in "1 0.3" "2 0.3" "1 0.0 --profile" "2 0.0 --profile"; do
    set -- $run
    step "$(seq -s, 0 $(($1 - 1)))" 110 "ddp_${1}gpu_padding$2${3:+_profile}" python3 -m torch.distributed.run \
      --nproc_per_node "$1" benchmarks/ddp_scaling.py --padding "$2" ${3:-} \
      --out benchmarks/results/ddp_scaling_recipe.jsonl
  done
  ;;
composer_2gpu)
  # Session 15: Composer's speed on two GPUs with the overrides in OVERRIDES (e.g.
  # "train_loader.num_workers=12"), named by TAG; compare with scaling_encoder's 2-GPU run (11,098
  # samples/s on its host, 1.76x its one-GPU run). One run, ~140 s.
  composer_speed 2 "pretraining_speed_encoder_2gpu_${TAG:?}" ${OVERRIDES:-}
  ;;
composer_scaling_profile)
  # (next, x2) Composer on one GPU, then on two, each with 5 of its last batches profiled
  # (`composer_profile` in the JSON: GPU ms by category, NCCL's included, and the GPU's idle stretches
  # with the kernels it waited for) and the host waits named by their calling frames. Session 15:
  # Composer 1.76x against raw DDP's 1.89-1.91x. Then two GPUs again with DDP's gradients as views of its
  # buckets (ddp_gradient_as_bucket_view, as the raw DDP loop has them). Limits add to 510 s.
  for run in "1 profiled" "2 profiled" "2 profiled_bucket_view ddp_gradient_as_bucket_view=true"; do
    set -- $run
    composer_speed "$1" "pretraining_speed_$2_${1}gpu" --profile_composer ${3:-}
  done
  ;;
composer_scaling_repeat)
  # (session 16, x2) After composer_scaling_profile's 1.88x (6,214 -> 11,706, profiled runs), the pair again
  # without profiles, the one-GPU run with the dataloader and the raw loop; then the same two runs with
  # every text through the whole tokenizer pipeline (`--without_ascii_path`: the loader of session 15's
  # 1.76x, measured before the ASCII path), in reverse order. ~400 s of steps on a two-GPU host.
  speed_1gpu 0 29501 pretraining_speed_s16_1gpu
  composer_speed 2 pretraining_speed_s16_2gpu
  composer_speed 2 pretraining_speed_s16_no_ascii_2gpu --without_ascii_path
  speed_1gpu 0 29502 pretraining_speed_s16_no_ascii_1gpu --without_ascii_path
  ;;
ddp_graph_splits_synced)
  # (next, x2) Where every batch syncs (one microbatch of 256 per GPU, no accumulation: the older scaling
  # stages' batch, and the A100-80GB platform YAML's way): whole compiled graphs (ddp_graph_splits false,
  # the default since session 17) against torch's split ones, whose per-bucket graphs may let the
  # all-reduce overlap the backward; the one-GPU run between them. Profiled (5 batches), so the JSON's
  # composer_profile.communication says how much of NCCL's time ran alone. Limits add to 510 s.
  composer_speed 2 pretraining_speed_synced_whole_2gpu --profile_composer
  composer_speed 1 pretraining_speed_synced_1gpu --profile_composer
  composer_speed 2 pretraining_speed_synced_splits_2gpu --profile_composer model.model_config.ddp_graph_splits=true
  ;;
composer_scaling_recipe_batch)
  # (session 16, x2) Composer on 1 and 2 GPUs with the recipe YAML's optimizer batch, 4096 samples: each
  # GPU accumulates its share in microbatches and DDP all-reduces the gradients once per 4096 samples
  # instead of once per 256 per GPU (the other scaling stages' batch). RUNS: "GPUS MICROBATCH" pairs, by
  # default microbatches of 128 (the YAML's), then 256 (the issue's table), 1-2-2-1; STEPS batches of 4096
  # (default 50), windows of STEPS/5 batches. Its first call found the YAML's batch crashing under
  # cuda_graphs (pytorch#169545; fixed by src/trainer.py's own_gradients); the second ran RUNS="1 128,2 128"
  # STEPS=30 in what was left of the session's device time. Session 17: a run may name a tag and overrides
  # after its pair ("2 128 splits model.model_config.ddp_graph_splits=true": results named ..._splits);
  # GLOBAL_BATCH (default 4096) and PREFIX (default pretraining_speed_batch4096) change the batch and names.
  # STEPS=20 keeps one GPU's 4096-sample batches inside the first epoch of .gpu_data_v2's 100,000 samples
  # (the epoch's end stalls every run ~2 s, session 17).
  steps=${STEPS:-50}
  IFS=, read -ra runs <<<"${RUNS:-1 128,2 128,2 256,1 256}"
  for run in "${runs[@]}"; do
    set -- $run
    gpus=$1 microbatch=$2 tag=${3:+_$3}
    shift $(($# < 3 ? $# : 3))
    composer_speed "$gpus" "${PREFIX:-pretraining_speed_batch4096}_mb${microbatch}_${gpus}gpu$tag" \
      --global_batch "${GLOBAL_BATCH:-4096}" --batch_size "$microbatch" --steps "$steps" \
      "callbacks.speed_monitor.window_size=$((steps / 5))" "$@"
  done
  ;;
recipe_now)
  # One H200: the issue's table rows with the recipe as the YAML has it (both paddings), then Composer's
  # speed of the recipe (end to end against the raw loop, and the dataloader alone).
  step 0 330 throughput_recipe_now python3 benchmarks/throughput.py --paddings 0.0 0.3 --variants \
    "HF BERT SDPA + compile" \
    "Mosaic BERT (full recipe) + encoder compile + fused GEGLU, Triton hidden dropout, bf16 hidden states" \
    "Mosaic BERT no GLU + encoder compile, Triton hidden dropout, bf16 hidden states" \
    --out benchmarks/results/throughput_recipe_now
  SPEED_LIMIT_S=170 speed_1gpu 0 29501 pretraining_speed_recipe_now
  ;;
optimizer)
  # Session 6: the recipes' decoupled_adamw is now torch's fused AdamW kernel (src/optimizers.py) instead of
  # Composer's per-parameter loop with a host wait per parameter. Composer speed with each (one GPU, one
  # after the other), then the throughput table with both optimizers, Inductor's coordinate-descent tuning
  # and the issue's comparison rows, and the profile with the top 40 kernels.
  speed_1gpu 0 29501 pretraining_speed_fused_adamw_1gpu
  speed_1gpu 0 29501 pretraining_speed_composer_adamw_1gpu optimizer.name=composer_decoupled_adamw
  recipe="Mosaic BERT (full recipe) + regional compile + fused GEGLU"
  step 0 330 throughput python3 benchmarks/throughput.py --out benchmarks/results/throughput_session6 \
    --variants "$recipe" "$recipe, Composer's DecoupledAdamW" "$recipe, Inductor coordinate descent" \
    "HF BERT SDPA + compile" "Mosaic BERT no GLU + regional compile" --profile "$recipe"
  ;;
pretokenized)
  # Composer speed of the recipe on one GPU with DATA pre-tokenized (convert_dataset.py --tokenizer).
  step 0 150 pretraining_speed_mosaic_1gpu_pretokenized $launcher -n 1 benchmarks/pretraining.py speed \
    --model mosaic_bert --data "$data" --steps 120 --raw_steps 30 --loader_batches 60 \
    --out benchmarks/results/pretraining_speed_mosaic_1gpu_pretokenized.json
  ;;
esac

python3 benchmarks/pretraining.py report >"$logs/report.log" 2>&1
for f in "$logs"/*.log; do echo "===== $f"; tail -n 25 "$f"; done
pack final
