#!/usr/bin/env bash
# Everything a short lent-GPU session should run, as one command that ends on time.
#
#   bash benchmarks/gpu_session.sh OUT_DIR SECONDS [NAME[:STEPS] ...]
#
# 1. the MAML-vs-higher, MAML CUDA-graph and MAML-memory benchmarks on a quiet GPU;
# 2. the GPU tests (beside the runs);
# 3. every reproduction named (default: missing or trained short, see short_records.py), all at once, each with
#    `--time-limit` so that it stops training in time to score itself and write its record;
# 4. packs logs and records into OUT_DIR as files of at most 16 MB (the device tool's limit).
#
# Needs the data in $MLCORE_DATA (default .data/) and, for the higher benchmark, the `higher`
# wheel in .whl/ (pip download higher==0.2.1 -d .whl). Each part has its own timeout, and a
# failing part does not stop the others. BUDGET=smoke makes a quick rehearsal on any machine.
#
# The device tool sends the working tree, and at most 64 MiB of it. The committed checkpoints in
# results/*.pt are larger than that (~95 MB, two 20–40 MB Siamese nets), and no GPU run needs them
# except the pretrained one. Move them aside for the call and back afterwards:
#   mkdir -p /tmp/pt && mv results/*.pt /tmp/pt/ && cp /tmp/pt/pretrained_omniglot_5w1s.pt results/
#   ... device call ...  then: mv /tmp/pt/*.pt results/
#
# TTA_MINUTES=N first runs benchmarks/time_to_accuracy.py (MAML 5w1s to 98.5 %, at most N minutes of
# training) alone on the card, before anything else starts: a time-to-accuracy needs a quiet GPU.
# TTA_ARGS=--cuda-graph trains it through one captured CUDA graph per meta-step.
set -u
OUT=$(mkdir -p "${1:?usage: gpu_session.sh OUT_DIR SECONDS [NAMES...]}" && cd "$1" && pwd)
TOTAL=${2:-540}
shift 2 || shift $#
T0=$(date +%s)
left() { echo $((TOTAL - ($(date +%s) - T0))); }
log() { echo "[$(($(date +%s) - T0)) s] $*" | tee -a "$OUT/summary.txt"; }

export MLCORE_DATA=${MLCORE_DATA:-$PWD/.data} PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
BUDGET=${BUDGET:-full}
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
mkdir -p "$WORK/logs" "$WORK/gpu/results"
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" .whl/*.whl \
    >"$WORK/logs/pip.log" 2>&1 && export PYTHONPATH="$WORK/site"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
log "start: budget $BUDGET, $TOTAL s, commit ${MLCORE_GIT_COMMIT:-?}"
(nvidia-smi || true) >"$WORK/logs/nvidia-smi.txt" 2>&1

# Many small Conv-4 processes share one GPU far better through MPS (kernels of different
# processes run side by side); if the daemon does not work here, go on without it.
if [ "$BUDGET" = full ] && command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=$WORK/mps_pipe CUDA_MPS_LOG_DIRECTORY=$WORK/mps_log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  if nvidia-cuda-mps-control -d && timeout 40 $PY -c "import torch; torch.ones(1).cuda().sum().item()"; then
    log "MPS daemon running"
  else
    echo quit | timeout 10 nvidia-cuda-mps-control || true
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    log "MPS unavailable; processes time-share the GPU"
  fi
fi

if [ "$BUDGET" = full ] && [ -n "${TTA_MINUTES:-}" ]; then
  timeout $(( TTA_MINUTES * 60 + 120 )) $PY benchmarks/time_to_accuracy.py --device cuda --max-minutes "$TTA_MINUTES" \
    ${TTA_ARGS:-} --out "$WORK/logs/time_to_accuracy_cuda.json" >"$WORK/logs/time_to_accuracy.log" 2>&1
  log "time_to_accuracy rc=$? $(tail -1 "$WORK/logs/time_to_accuracy.log")"
fi

export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True  # 30 processes share the card: give back what is freed
if [ "$BUDGET" = full ] && [ -z "${SKIP_BENCH:-}" ]; then
  timeout 90 $PY benchmarks/maml_vs_higher.py --device cuda --iters 4 --out "$WORK/logs/maml_vs_higher_cuda.json" \
    >"$WORK/logs/maml_vs_higher.log" 2>&1; log "maml_vs_higher rc=$? $(grep -h 'x$' "$WORK/logs/maml_vs_higher.log" | tr '\n' ' ')"
  timeout 120 $PY benchmarks/maml_cuda_graph.py --out "$WORK/logs/maml_cuda_graph_cuda.json" \
    >"$WORK/logs/maml_cuda_graph.log" 2>&1; log "maml_cuda_graph rc=$? $(grep -h 'x (' "$WORK/logs/maml_cuda_graph.log" | tr '\n' ' ')"
  timeout 40 $PY benchmarks/maml_memory.py --device cuda --out "$WORK/logs/maml_memory_cuda.json" \
    >"$WORK/logs/maml_memory.log" 2>&1; log "maml_memory rc=$?"
  (timeout 300 $PY -m pytest -m gpu tests/test_gpu.py -q -p no:cacheprovider >"$WORK/logs/pytest_gpu.log" 2>&1;
   echo "rc=$?" >>"$WORK/logs/pytest_gpu.log") &
fi

NAMES=("$@")
if [ ${#NAMES[@]} -eq 0 ]; then
  # every reproduction with no record or trained short of its recipe (benchmarks/short_records.py)
  mapfile -t NAMES < <($PY benchmarks/short_records.py)
fi
# the traits record re-uses the committed pretrained record instead of training it again
cp results/pretrained_omniglot_5w1s.json results/pretrained_omniglot_5w1s.pt "$WORK/gpu/results/" 2>/dev/null
RESERVE=${EVAL_RESERVE:-150}
DEADLINE=$(( $(left) - 30 ))
log "reproductions: ${#NAMES[@]} runs, deadline $DEADLINE s, training stops $RESERVE s before it"
$PY benchmarks/reproduce_many.py --out "$WORK/gpu" --deadline "$DEADLINE" --jobs 64 --budget "$BUDGET" \
  --eval-reserve "$RESERVE" "${NAMES[@]}" >"$WORK/logs/reproduce_many.log" 2>&1
log "reproductions done: $(grep -c '"rc": 0' "$WORK/logs/reproduce_many.log") of ${#NAMES[@]} exited 0"
wait
cp "$WORK"/gpu/logs/*.log "$WORK/logs/" 2>/dev/null
cp "$WORK/gpu/summary.json" "$WORK/logs/reproduce_summary.json" 2>/dev/null
rm -f "$WORK"/gpu/results/pretrained_omniglot_5w1s.*
for f in "$WORK"/gpu/results/*.json; do
  [ -e "$f" ] && log "$(basename "$f" .json): $($PY -c "import json,sys; r=json.load(open(sys.argv[1])); \
m=r.get('metrics',{}); print(r.get('accuracy') or m.get('mean_total_reward'), '+-', r.get('ci95'), \
(r.get('config') or {}).get('time_limited', ''), 'train', round(r.get('train_wall_s') or 0), 's')" "$f" 2>&1)"
done
tail -3 "$WORK/logs/pytest_gpu.log" 2>/dev/null | tee -a "$OUT/summary.txt"
tar czf "$OUT/logs.tgz" -C "$WORK" logs
tar czf - -C "$WORK/gpu" results | split -b 16000000 -d -a 1 - "$OUT/results.tgz.part"
log "packed: $(ls "$OUT" | tr '\n' ' ')"
