"""training/gpu_stage.sh resume: the pipeline again in the work tree a failed run left (same lease), keeping
what finished there and starting the results afresh."""

import os
import subprocess
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "gpu_stage.sh"
STUB = """#!/usr/bin/env bash
# stands in for gpu_run.sh: records how it was called (written whole, then moved: the test reads it meanwhile)
{ echo "shapes=$SHAPES seeds=$TEACHER_SEEDS args=$*"; ls runs; } > "$3/log.partial"
mv "$3/log.partial" "$3/log.txt"
"""


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "STAGE": str(tmp_path / "stage"), "WORK": str(tmp_path / "work"),
            "RESULTS": str(tmp_path / "results"), "LAUNCH_WAIT": "0", "TEACHER_SEEDS": "0"}


def test_resume_keeps_the_work_tree_and_starts_fresh_results(tmp_path):
    work = tmp_path / "work"
    (work / "training").mkdir(parents=True)
    (work / "training" / "gpu_run.sh").write_text(STUB)
    (work / "runs" / "default" / "teacher-s1").mkdir(parents=True)  # what the failed run finished
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "log.txt").write_text("TEACHER FAILED\nPIPELINE_FAILED\n")
    r = subprocess.run(["bash", str(SCRIPT), "resume", "b22-f1536-e4-hv"], env=_env(tmp_path), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    log = tmp_path / "results" / "log.txt"
    for _ in range(100):  # the pipeline runs detached from the call
        if log.exists() and "shapes=" in log.read_text():
            break
        time.sleep(0.05)
    text = log.read_text()
    assert "PIPELINE_FAILED" not in text  # the failed run's results are gone
    assert f"shapes=b22-f1536-e4-hv seeds=0 args=runs/data {tmp_path / 'stage' / 'backbone.gguf'} {tmp_path / 'results'}" in text
    assert "default" in text.splitlines()[1:]  # the work tree's runs/ survived
    assert (work / "runs" / "default" / "teacher-s1").is_dir()


@pytest.mark.parametrize("args", [["resume", "b22-f1536-e4-hv"], ["resume"]])
def test_resume_without_a_started_run_is_an_error(tmp_path, args):
    r = subprocess.run(["bash", str(SCRIPT), *args], env=_env(tmp_path), capture_output=True, text=True)
    assert r.returncode != 0
    assert ("nothing to resume" in r.stderr) if len(args) == 2 else ("shapes" in r.stderr)
    assert not (tmp_path / "results").exists()


def test_poll_on_a_fresh_machine_says_so_at_once(tmp_path):
    """A machine that went back between calls leaves a fresh one with nothing started: no waiting out the call."""
    t0 = time.monotonic()
    r = subprocess.run(["bash", str(SCRIPT), "poll", "60"], env=_env(tmp_path), capture_output=True, text=True)
    assert r.returncode == 3
    assert "no pipeline was started on this machine" in r.stderr
    assert time.monotonic() - t0 < 30


def test_poll_stops_waiting_for_a_pipeline_that_died(tmp_path):
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "run.log").write_text("started\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "log.txt").write_text("teacher: step 40\n")  # no PIPELINE_FINISHED / _FAILED, no process
    t0 = time.monotonic()
    r = subprocess.run(["bash", str(SCRIPT), "poll", "60"], env=_env(tmp_path), capture_output=True, text=True)
    assert "the pipeline is not running and did not finish" in r.stderr
    assert "teacher: step 40" in r.stdout
    assert time.monotonic() - t0 < 30


def test_start_with_a_missing_backbone_part_names_the_parts_it_has(tmp_path):
    part = tmp_path / "p01"
    part.write_bytes(b"second half")
    env = {**_env(tmp_path), "BACKBONE_SHA256": "0" * 64}
    r = subprocess.run(["bash", str(SCRIPT), "start", "b22-f1536-e4-hv", str(part)], env=env, capture_output=True, text=True)
    assert r.returncode == 1
    assert "p01 (11 bytes)" in r.stderr and "send the missing ones with `part`" in r.stderr
    assert not (tmp_path / "work").exists()  # nothing launched
