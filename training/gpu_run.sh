#!/usr/bin/env bash
# Make the default guard on one GPU machine: backbone → teacher → the student shapes (in parallel) → eval of
# teacher and students on dev and dev_heldout, then pack what comes back (reports, training logs, eval
# predictions; the artifacts stay in runs/default/students/ for a later call to fetch). Data come prepared
# (build_data.py output) and the backbone GGUF comes in, because neither the raw sets nor a hub are there:
#
#   training/gpu_run.sh DATA_DIR BACKBONE_GGUF RESULTS_DIR
#
# A stopped run resumes where it stopped on the next call, as long as runs/ survived. RESULTS_DIR gets
# log.txt and results.tgz; `training/gpu_run.sh --pack SHAPE RESULTS_DIR` packs one student artifact in
# 15 MB parts (`cat student.tgz.* | tar xz` restores runs/default/students/SHAPE/model).
set -uo pipefail
export PYTHONUNBUFFERED=1
if [ "${1:-}" = "--pack" ]; then
  shape=${2:?shape}; results=${3:?results dir}; mkdir -p "$results"
  tar czf - -C runs default/students/"$shape"/model | split -b 15m -d - "$results/student.tgz."
  ls -la "$results"; exit 0
fi
data=${1:?data dir}; backbone=${2:?backbone gguf}; results=${3:?results dir}
mkdir -p "$results"
dg="python3 training/default_guard.py --data $data --backbone $backbone"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch, torchao; print("torch", torch.__version__, "torchao", torchao.__version__)'
  start=$(date +%s)
  # the loss curves as they grow (training steps write no progress bar when stderr is not a terminal)
  (while sleep 30; do tail -qn1 runs/default/*/steps/*.partial/train/train_log.jsonl \
     runs/default/students/*/steps/*.partial/train/train_log.jsonl 2>/dev/null; done) &
  tailer=$!
  $dg backbone && $dg teacher && echo "teacher done after $(( $(date +%s) - start ))s" || echo "TEACHER FAILED"
  pids=()
  for shape in $(python3 -c 'import sys; sys.path.insert(0, "training"); import default_guard as d; print(*d.SHAPES)'); do
    $dg student --shape "$shape" > "$results/student-$shape.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || echo "a student failed (exit $?)"; done
  echo "students done after $(( $(date +%s) - start ))s"
  $dg eval --device cuda
  echo "eval done after $(( $(date +%s) - start ))s"
  $dg card
  $dg probe --device cuda
  kill "$tailer"  # it holds the pipe to tee open: left running, the packing below would never start
} 2>&1 | grep --line-buffered -v -E "Warning|warnings.warn|register_constant" | tee "$results/log.txt"
cd runs && tar czf "$results/results.tgz" --exclude='*.partial' --exclude='train_state.pt' \
  default/recipes default/eval default/teacher/report.jsonl $(ls default/students/*/report.jsonl \
  default/*/steps/*/step.json default/students/*/steps/*/step.json default/*/steps/*/train_log.jsonl \
  default/students/*/steps/*/train_log.jsonl 2>/dev/null) 2>/dev/null
ls -la "$results"
echo PIPELINE_FINISHED
