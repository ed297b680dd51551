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


def _run(tmp_path: Path, **env) -> list[str]:
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
    (stubs / "nvidia-smi").write_text("#!/usr/bin/env bash\necho 81559\n")  # an H100: PARALLEL=1
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


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_on_a_one_job_gpu_the_students_start_after_the_teachers_eval(tmp_path):
    """The teacher's eval (43 GB) and a distillation (47 GB) do not fit an H100 side by side (run aa): the first
    student starts once the eval has ended, and the students train one after the other."""
    calls = _run(tmp_path)
    eval_end = _at(calls, "end", " eval --device cuda --models teacher")
    first, second = _at(calls, "start", "student --shape s-a"), _at(calls, "start", "student --shape s-b")
    assert eval_end < first < _at(calls, "end", "student --shape s-a") < second
    probes = [c for c in calls if c.startswith("start") and " probe " in c]
    assert probes and all("--models teacher,s-a" in c for c in probes[-2:])  # the picked student beside its teacher


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
    probes = [c for c in calls if c.startswith("start") and " probe " in c]
    assert len(probes) == 2 and all(c.endswith("--models s-a") for c in probes)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("teacher_eval, models", [("1", "teacher,teacher-s0,teacher-s1"), ("teacher", "teacher")])
def test_teacher_eval_teacher_evaluates_a_soup_without_its_ingredients(tmp_path, teacher_eval, models):
    """A soup's ingredients are evaluated and probed beside it by default (did averaging help?); TEACHER_EVAL=teacher
    leaves them out, since on an H100 the students wait for that eval (~110 s a model: run ae's three held its
    student 330 s)."""
    calls = _run(tmp_path, TEACHER_EVAL=teacher_eval, STUB_INGREDIENTS="teacher-s0,teacher-s1")
    evals = [c for c in calls if c.startswith("start") and " eval --device cuda" in c]
    assert len(evals) == 1 and f"--models {models} " in evals[0]
    probes = [c for c in calls if c.startswith("start") and " probe " in c]
    assert probes and all(c.endswith(f"--models {models}") or c.endswith(f"--models {models},s-a") for c in probes)
    assert probes[-1].endswith(f"--models {models},s-a")
