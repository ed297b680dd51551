#!/usr/bin/env bash
# Make the default guard on one GPU machine and pack what comes back: the student artifact, the eval
# reports (teacher vs student), the step reports and training logs. Data come prepared (build_data.py
# output) because the raw sets are not on that machine:
#
#   training/gpu_run.sh DATA_DIR RESULTS_DIR [SECONDS]
#
# SECONDS bounds the training (default 480); a stopped run resumes where it stopped on the next call, as
# long as runs/ survived. Results: RESULTS_DIR/log.txt and RESULTS_DIR/default-run.tgz.NN (15 MB parts;
# `cat default-run.tgz.* | tar xz` restores runs/default/...).
set -uo pipefail
data=${1:?data dir}; results=${2:?results dir}; budget=${3:-480}
mkdir -p "$results"
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch, torchao; print("torch", torch.__version__, "torchao", torchao.__version__)'
  start=$(date +%s)
  # the loss curve as it grows (training steps write no progress bar when stderr is not a terminal)
  (while sleep 45; do tail -qn1 runs/default/*/steps/*.partial/train/train_log.jsonl 2>/dev/null; done) &
  tailer=$!
  timeout "$budget" python3 training/default_guard.py all --data "$data" --models teacher
  echo "default_guard exit $? after $(( $(date +%s) - start ))s"
  kill "$tailer"  # it holds the pipe to tee open: left running, the packing below would never start
} 2>&1 | grep --line-buffered -v -E "Warning|warnings.warn|register_constant" | tee "$results/log.txt"
cd runs && tar czf - --exclude='*.partial' --exclude='train_state.pt' --exclude='teacher-init' \
  default/student/model default/student/report.jsonl default/teacher/report.jsonl default/recipes default/eval \
  default/teacher/teacher_dev.json default/student/teacher_dev.json \
  $(ls default/*/steps/*/step.json default/*/steps/*/train_log.jsonl 2>/dev/null) 2>/dev/null | split -b 15m -d - "$results/default-run.tgz."
ls -la "$results"
