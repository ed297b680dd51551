#!/usr/bin/env bash
# Make the default guard on one GPU machine: backbone → teacher (a soup of fine-tunes, side by side where the GPU
# holds them) → its labels on the unlabelled pool → the student shapes in parallel (each evaluated when trained),
# with the teacher's eval on dev and dev_heldout beside them → pick the student to ship → pack what comes back
# (reports, training logs, the teacher's eval, the picked student artifact in 15 MB parts). Data come
# prepared (build_data.py output) and the backbone GGUF comes in, because neither the raw sets nor a hub
# are there:
#
#   training/gpu_run.sh DATA_DIR BACKBONE_GGUF RESULTS_DIR
#
# SHAPES="b18-f1024 b24-f1024-e4" (environment) trains those student shapes only (default: all of SHAPES),
# PARALLEL=N of them at a time, and N teacher fine-tunes (default: one per 70 GB of the GPU, so 2 on an H200 and 1
# on an H100: a fine-tune peaks at 63 GB, a distillation at 47 GB beside the teacher's eval; on run aa's H100 the
# second seed and both students ran out of memory side by side). A student that fails anyway is retried alone
# once the others are done.
# A stopped run resumes where it stopped on the next call, as long as runs/ survived. RESULTS_DIR gets
# log.txt, results.tgz and student.tgz.NN (`cat student.tgz.* | tar xz -C runs` restores
# default/students/SHAPE/model) and ends with a line PIPELINE_FINISHED in log.txt (PIPELINE_FAILED when the teacher
# failed or no student finished). SMOKE=1 runs the same pipeline at default_guard.py's --smoke sizes (runs/smoke,
# SMOKE_SHAPES, a sample of the data; a few minutes): a check of the pipeline on the GPU, not a guard.
set -uo pipefail
export PYTHONUNBUFFERED=1
# Two processes share the GPU (teacher fine-tunes, students); unsplittable cached blocks made one run out of memory (run g)
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
data=${1:?data dir}; backbone=${2:?backbone gguf}; results=$(realpath -m "${3:?results dir}")
mkdir -p "$results"
run=default; smoke=""
if [ -n "${SMOKE:-}" ] && [ "$SMOKE" != 0 ]; then run=smoke; smoke=--smoke; fi
export POCKETGUARD_RUN=$run  # the shape table the python one-liners read (py_shapes)
# Students distil side by side but take turns at QAT (default_guard.py QAT_LOCK): two QAT steps at once ran out of
# the H200's memory in runs d and m, and the retry alone cost ~210 s of the lease
export QAT_LOCK=${QAT_LOCK:-$results/.qat.lock}
dg="python3 training/default_guard.py $smoke --data $data --backbone $backbone"
gpu_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2> /dev/null | head -1)
export PARALLEL=${PARALLEL:-$(( ${gpu_mib:-0} / 70000 > 1 ? ${gpu_mib:-0} / 70000 : 1 ))}
py_shapes='import os, sys; sys.path.insert(0, "training"); import default_guard as d; S = d.SMOKE_SHAPES if os.environ["POCKETGUARD_RUN"] == "smoke" else d.SHAPES'

# STUDENT_EVAL=0 skips the students' GPU eval (~4 min each): `pick` reads their recipe reports, and the shipped
# one is evaluated on the CPU it ships for anyway; STUDENT_EVAL=heldout evaluates them on the held-out sources
# only (only the picked student comes back: the others' held-out numbers come from here). DISTILL_EVAL=0 skips the
# held-out eval of each student's float checkpoint before QAT (SHAPE@distill, ~1 min): runs d-g lost 5-7 held-out
# points to their teachers, and this says how much of that is pruning and distillation and how much is int4 (a
# shape with a `base` has its base's distilled checkpoint: not evaluated twice).
student_eval() {
  [ "${DISTILL_EVAL:-1}" = 0 ] || [ -n "$(base_of "$1")" ] \
    || $dg eval --device cuda --models "$1@distill" --split dev_heldout --tag "$1-distill"
  case "${STUDENT_EVAL:-1}" in
    0) ;;
    heldout) $dg eval --device cuda --models "$1" --split dev_heldout --tag "$1" ;;
    *) $dg eval --device cuda --models "$1" --tag "$1" ;;
  esac
}
# Every probe set (build_data.py keeps each out of the data) as tables of the models $1, in one process
probe_all() { $dg probe --device cuda $(printf -- '--probes %s ' training/probes*.jsonl) --models "$1"; }
base_of() { python3 -c "$py_shapes; print(S[sys.argv[1]].base)" "$1"; }
# A shape with a `base` (the same recipe up to QAT) starts once its base's recipe finished, from the base's distilled
# checkpoint (or, when the base failed, on its own): QAT variants cost one distillation. Not beside the base's QAT:
# two QAT steps at once ran out of the H200's memory in run d, and two at once are not much faster than one after the other.
await_base() {
  local base; base=$(base_of "$1")
  [ -n "$base" ] && [ -n "${job[$base]:-}" ] || return 0
  # (finished in this run: a model/ left by an earlier run, or before a resume, does not count)
  while ! [ runs/$run/students/"$base"/model/manifest.json -nt "$results/.started-$base" ] && kill -0 "${job[$base]}" 2> /dev/null; do
    sleep 10
  done
}
declare -A job
shapes=${SHAPES:-$(python3 -c "$py_shapes; print(*S)")}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch, torchao; print("torch", torch.__version__, "torchao", torchao.__version__)'
  start=$(date +%s)
  # The padded one-call attention that label and eval take on the GPU, checked there against the per-sequence path
  if ! python3 -m pytest -q -x -p no:cacheprovider tests/test_batching.py -k padded; then echo "TEACHER FAILED (padded check)"; exit 1; fi
  # Training batches built ahead in DataLoader workers (pinned, on CUDA): the loop builds them itself if that fails
  if ! python3 -m pytest -q -x -p no:cacheprovider tests/test_train.py -k "loader_workers and cuda"; then
    echo "loader check failed: LOADER_WORKERS=0"; export LOADER_WORKERS=0
  fi
  # The teacher: TEACHER_SEEDS fine-tunes, PARALLEL side by side, averaged (default_guard.py soup), unless one kept
  # from an earlier lease came in (gpu_stage.sh fetch-teacher / start): then neither the backbone nor the training is needed
  if [ -s runs/$run/teacher/model/config.json ]; then
    echo "teacher: kept from an earlier lease: $(cat runs/$run/teacher/ORIGIN 2> /dev/null)"
    if ! $dg data; then echo "TEACHER FAILED"; exit 1; fi
  elif ! { $dg data && $dg backbone && $dg teacher; }; then echo "TEACHER FAILED"; exit 1; fi
  echo "teacher done after $(( $(date +%s) - start ))s"
  # The teacher's eval runs beside its labelling of the unlabelled pool and the students (inference next to
  # training fits on one H200). The students' quality-vs-size points are their recipe reports (dev F1 and
  # agreement with the teacher after every step); the shipped one is evaluated where it ships (CPU).
  # (the soup's ingredients too: whether averaging helped on the held-out sources is measured, not assumed)
  # (those that finished: a soup survives a lost ingredient)
  # (a lone survivor is the teacher itself: run aa evaluated one model twice)
  ingredients=$(python3 -c 'import sys; sys.path.insert(0, "training"); import default_guard as d; p = d.Paths(d.ROOT / "runs" / sys.argv[2], d.ROOT / sys.argv[1], sys.argv[2] == "smoke"); s = [f"teacher-s{s}" for s in p.seeds if (p.model(f"teacher-s{s}") / "config.json").exists()]; print(",".join(s if len(s) > 1 else []))' "$data" "$run")
  # TEACHER_EVAL=teacher evaluates the teacher alone: on an H100 the students wait for this eval, ~110 s a model
  # (run ae's three models held its student 330 s), and a soup's ingredients' numbers are a measurement, not a need
  if [ "${TEACHER_EVAL:-1}" = teacher ]; then ingredients=""; fi
  # and its probe tables, beside the students where the GPU holds both (a lease that ends before `pick` still says
  # what the teacher gets right: run m's did not)
  # (positions.jsonl too, where build_data.py wrote it: does the teacher judge an ask wherever it sits in a message?)
  # (and the subset split: harm under a policy of three categories, which the guard shipped on 2026-12-04 mostly missed)
  # TEACHER_EVAL=0 skips it: a kept teacher's eval came back with the lease that trained it (copy that run's
  # eval/*-cuda folders into the new run's eval/ before `judge`), and on an H100 the students wait for it (119 s
  # for one model in run ad: its 43 GB and a distillation's 47 GB ran out of the 80 side by side in run aa)
  # On a one-job GPU only the splits `judge` compares a student with (dev, dev_heldout, positions) hold the students
  # back; the subset split waits until they are done and the probe tables come with the picked student's (run am lost
  # its student to the lease's end ~2 minutes before QAT finished, after ~100 s of the teacher's subset eval and
  # probes ahead of it)
  teachers="teacher${ingredients:+,$ingredients}"
  pids=(); eval_pid=""  # (the eval's own: with TEACHER_EVAL=0 pids[0] is the first student, whom the gate below
  # then left out of its count, so two distillations started side by side on run af's H100)
  if [ "${TEACHER_EVAL:-1}" != 0 ]; then
    { $dg eval --device cuda --models "$teachers" --split dev --split dev_heldout \
        $([ -s "$data/positions.jsonl" ] && echo --split positions) $([ "$PARALLEL" = 1 ] || echo --split subset)
      [ "$PARALLEL" = 1 ] || probe_all "$teachers"
    } > "$results/eval-teacher.log" 2>&1 &
    eval_pid=$!; pids=($!)
  fi
  # Only "-x" shapes distil on the labelled pool: without one, labelling it is time the lease may not have
  if python3 -c "$py_shapes; sys.exit(not any(S[s].extra for s in sys.argv[1:]))" $shapes; then
    if ! $dg label; then echo "TEACHER FAILED (label)"; exit 1; fi
    echo "label done after $(( $(date +%s) - start ))s"
  fi
  # A GPU that holds one job at a time (PARALLEL=1) finishes the teacher's eval (beside `label`, as on the H200)
  # before the students start (polled, not waited for: the loop below collects its exit status)
  if [ "$PARALLEL" = 1 ]; then while kill -0 "$eval_pid" 2> /dev/null; do sleep 5; done; fi
  # Each student is evaluated on the GPU (its fast path) as soon as it is trained, beside the others' training:
  # the quality-vs-size points on dev and on the held-out sources; the shipped one is evaluated again on the CPU.
  # At most PARALLEL students train at once: distillation holds the teacher and a student at batch
  # 64 x 1024 tokens, ~60 GB each, and three beside the teacher's eval ran out of the H200's 140 GB (2026-12-02-c).
  for shape in $shapes; do
    while [ "$(jobs -rp | grep -c -v -x -F "$eval_pid")" -ge "$PARALLEL" ]; do wait -n; done
    touch "$results/.started-$shape"
    { await_base "$shape"; $dg student --shape "$shape" && student_eval "$shape"; } > "$results/student-$shape.log" 2>&1 &
    pids+=($!); job[$shape]=$!
  done
  for pid in "${pids[@]}"; do wait "$pid" || echo "a job failed (exit $?)"; done
  # A student that failed beside another (two QAT steps at once ran out of memory in run d) is run again alone:
  # the recipe resumes from its last finished step.
  for shape in $shapes; do
    if [ ! -s "runs/$run/students/$shape/model/manifest.json" ]; then
      echo "retrying $shape alone"
      { $dg student --shape "$shape" && student_eval "$shape"; } >> "$results/student-$shape.log" 2>&1 \
        || echo "$shape failed again"
    fi
  done
  if [ "${TEACHER_EVAL:-1}" != 0 ] && [ "$PARALLEL" = 1 ]; then
    $dg eval --device cuda --models "$teachers" --split subset >> "$results/eval-teacher.log" 2>&1
  fi
  echo "students and teacher eval done after $(( $(date +%s) - start ))s"
  for f in "$results"/student-*.log; do grep -E "^\[|→" "$f"; done
  $dg pick
  probe_all "$([ "${TEACHER_EVAL:-1}" = 0 ] || echo "$teachers,")$(cat runs/$run/picked.txt)"
} 2>&1 | grep --line-buffered -v -E "Warning|warnings.warn|register_constant" | tee "$results/log.txt"
# A failed teacher, or no student to pick, leaves nothing to pack: say so instead of finishing.
if grep -q "TEACHER FAILED" "$results/log.txt" || [ ! -s runs/$run/picked.txt ]; then
  echo PIPELINE_FAILED | tee -a "$results/log.txt"; exit 1
fi
cd runs && tar czf - -C . $run/students/"$(cat $run/picked.txt)"/model | split -b 15m -d - "$results/student.tgz."
tar czf "$results/results.tgz" --exclude='*.partial' --exclude='train_state.pt' $run/recipes $run/eval \
  $run/picked.txt $(ls $run/teacher/report.jsonl $run/teacher/soup.json $run/teacher-s*/report.jsonl \
  $run/students/*/report.jsonl $run/*/steps/*/step.json \
  $run/students/*/steps/*/step.json $run/*/steps/*/train_log.jsonl $run/students/*/steps/*/train_log.jsonl \
  2>/dev/null) 2>/dev/null
ls -la "$results"
echo PIPELINE_FINISHED | tee -a "$results/log.txt"
