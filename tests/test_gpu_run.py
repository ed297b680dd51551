"""training/gpu_run.sh's order of work, run here with `nvidia-smi` and `python3` stubbed (they log what they are
asked and make what the next step reads): what runs beside what on a one-job GPU, and what TEACHER_EVAL=0 leaves
out. The steps themselves are default_guard.py's, tested in test_default_guard.py."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PYTHON3 = """#!/usr/bin/env bash
echo "start $*" >> "$STUB_LOG"
case "$*" in
  *"default_guard.py"*" student --shape "*)
    shape=${@: -1}; sleep 1; mkdir -p runs/default/students/$shape/model; echo '{}' > runs/default/students/$shape/model/manifest.json ;;
  *"default_guard.py"*" pick"*) mkdir -p runs/default; echo "${SHAPES%% *}" > runs/default/picked.txt ;;
  *"default_guard.py"*" eval "*) sleep 1 ;;
  *"import default_guard as d"*"teacher-s"*) echo "${STUB_INGREDIENTS:-}" ;;  # the soup's ingredients that finished
esac
echo "end $*" >> "$STUB_LOG"
"""


def _run(tmp_path: Path, gpu_mib: int = 81559, **env) -> list[str]:
    work, stubs = tmp_path / "work", tmp_path / "stubs"
    (work / "training").mkdir(parents=True)
    shutil.copy(REPO / "training" / "gpu_run.sh", work / "training" / "gpu_run.sh")
    for name in ("probes.jsonl", "probes-blind.jsonl"):
        (work / "training" / name).write_text("")
    teacher = work / "runs" / "default" / "teacher" / "model"  # a kept teacher: no backbone, no training
    teacher.mkdir(parents=True)
    (teacher / "config.json").write_text("{}")
    stubs.mkdir()
    (stubs / "python3").write_text(PYTHON3)
    (stubs / "nvidia-smi").write_text(f"#!/usr/bin/env bash\necho {gpu_mib}\n")  # 81559: an H100, PARALLEL=1
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    log = tmp_path / "calls.log"
    run_env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "STUB_LOG": str(log), "SHAPES": "s-a s-b",
               "STUDENT_EVAL": "0", "DISTILL_EVAL": "0", "TEACHER_SEEDS": "0", **env}
    run_env.pop("PARALLEL", None)
    done = subprocess.run(["bash", "training/gpu_run.sh", "runs/data", "backbone.gguf", str(tmp_path / "results")],
                          cwd=work, env=run_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "results" / "log.txt").read_text().rstrip().endswith("PIPELINE_FINISHED")
    return log.read_text().splitlines()


def _at(calls: list[str], prefix: str, needle: str) -> int:
    return next(i for i, c in enumerate(calls) if c.startswith(prefix) and needle in c)


def _probe_calls(calls: list[str]) -> list[str]:
    probes = [c for c in calls if c.startswith("start") and " probe " in c]
    for c in probes:  # every set in one process
        assert "--probes training/probes-blind.jsonl --probes training/probes.jsonl " in c
    return probes


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_on_a_one_job_gpu_the_students_start_after_the_teachers_eval(tmp_path):
    """The teacher's eval (43 GB) and a distillation (47 GB) do not fit an H100 side by side (run aa): the first
    student starts once the eval of the splits `judge` compares it with has ended, and the students train one after
    the other; the teacher's subset eval waits for them, and its probe tables come with the picked student's (run am
    lost its student to the lease's end after ~100 s of those ahead of it)."""
    calls = _run(tmp_path)
    first_eval = _at(calls, "start", " eval --device cuda --models teacher")
    assert "--split dev --split dev_heldout" in calls[first_eval] and "subset" not in calls[first_eval]
    eval_end = _at(calls, "end", " eval --device cuda --models teacher")
    first, second = _at(calls, "start", "student --shape s-a"), _at(calls, "start", "student --shape s-b")
    assert eval_end < first < _at(calls, "end", "student --shape s-a") < second
    assert _at(calls, "end", "student --shape s-b") < _at(calls, "start", "--models teacher --split subset")
    probes = _probe_calls(calls)
    assert len(probes) == 1 and probes[0].endswith("--models teacher,s-a")  # the picked student beside its teacher


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_on_a_two_job_gpu_the_teachers_whole_eval_runs_beside_the_students(tmp_path):
    """Where the GPU holds the eval beside a distillation (an H200: PARALLEL=2), the teacher's every split and
    probe table run at once, beside `label` and the students, none of which wait for them."""
    calls = _run(tmp_path, gpu_mib=143771)
    evals = [c for c in calls if c.startswith("start") and " eval --device cuda" in c]
    assert len(evals) == 1 and "--split subset" in evals[0]
    probes = _probe_calls(calls)
    assert len(probes) == 2 and probes[0].endswith("--models teacher") and probes[1].endswith("--models teacher,s-a")
    assert _at(calls, "start", "student --shape s-b") < _at(calls, "end", "student --shape s-a")  # side by side


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_teacher_eval_0_leaves_a_kept_teachers_eval_out(tmp_path):
    """TEACHER_EVAL=0: no eval or probes of the teacher on the GPU (its first lease brought them back), so the
    first student starts at once after `label`, and the second once it has ended (in run af the gate took the
    first student for the teacher's eval and let two distillations overrun the H100 side by side); the final probe
    tables are the picked student's alone."""
    calls = _run(tmp_path, TEACHER_EVAL="0")
    assert not any(" eval " in c for c in calls)
    assert (_at(calls, "end", " label") < _at(calls, "start", "student --shape s-a")
            < _at(calls, "end", "student --shape s-a") < _at(calls, "start", "student --shape s-b"))
    probes = _probe_calls(calls)
    assert len(probes) == 1 and probes[0].endswith("--models s-a")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("teacher_eval, models", [("1", "teacher,teacher-s0,teacher-s1"), ("teacher", "teacher")])
def test_teacher_eval_teacher_evaluates_a_soup_without_its_ingredients(tmp_path, teacher_eval, models):
    """A soup's ingredients are evaluated and probed beside it by default (did averaging help?); TEACHER_EVAL=teacher
    leaves them out, since on an H100 the students wait for that eval (~110 s a model: run ae's three held its
    student 330 s)."""
    calls = _run(tmp_path, TEACHER_EVAL=teacher_eval, STUB_INGREDIENTS="teacher-s0,teacher-s1")
    evals = [c for c in calls if c.startswith("start") and " eval --device cuda" in c]
    assert len(evals) == 2 and all(f"--models {models} " in c for c in evals)  # the judged splits, then subset
    probes = _probe_calls(calls)
    assert len(probes) == 1 and probes[0].endswith(f"--models {models},s-a")
