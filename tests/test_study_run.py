"""`dil-causal study run`: one loop over an executor. The smoke study through a Dask cluster of two worker processes
gives the store that local processes give; a unit that fails leaves a failure record, the others finish, `status` and
`report` list it and `--retry-failed` trains it; a unit claimed by another live run is named, not skipped in silence;
bad arguments and a store that cannot be written are refused before anything trains, each with one line."""
import json, os, shutil, subprocess, sys, time

import pytest

from conftest import ROOT, SMOKE_DATA as HAVE_DATA, run, scores, venv_bin

ENV = {"OMP_NUM_THREADS": "1"}
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="the smoke study trains on CBSD432 from ../shared/data (or $DIL_DATA): not here")


def cli(*args, timeout=900):
    return run([venv_bin("dil-causal"), "study", *map(str, args)], timeout=timeout, env=ENV)


def first_unit(store):
    "The first unit `run` would hand out (a sweep unit of the first arm)."
    from dil_causal.study import Store, pending, study_root
    return pending(Store(store), study_root())[0][0]


@pytest.fixture
def local(smoke_store):
    "The smoke study run once through local processes, the default executor (conftest's `smoke_store`)."
    return smoke_store


@needs_data
def test_smoke_through_dask_equals_local_processes(local, tmp_path):
    "A Dask LocalCluster of two worker processes, reached with --scheduler: the same unit keys and the same scores."
    distributed = pytest.importorskip("distributed", reason="Dask is the optional extra: pip install 'dil_causal[cluster]'")
    store = tmp_path / "store"
    assert cli("plan", store, "--study", "smoke").returncode == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        r = cli("run", store, "--scheduler", cluster.scheduler_address, "--threads", 1, "--work", tmp_path / "work", "--no-reuse")
        workers = len(cluster.workers)
    assert r.returncode == 0 and "14 units finished" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    assert workers == 2
    assert set(scores(store)) == set(scores(local))           # the same units, by key
    assert scores(store) == scores(local)                     # and the same curves, test PSNR and tracking, to the bit
    assert not (store / "failures").exists()


@needs_data
def test_failed_unit_is_kept_listed_and_retried(local, tmp_path):
    "A real failure: a file stands where the first unit's work folder goes, so `fit` cannot write its checkpoints."
    store, work = tmp_path / "store", tmp_path / "work"
    assert cli("plan", store, "--study", "smoke").returncode == 0
    bad = first_unit(store)
    work.mkdir(); (work / bad.key).write_text("in the way")
    r = cli("run", store, "--jobs", 2, "--work", work, "--no-reuse")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]      # the run goes on with the others
    assert f"{bad.name}: failed: FileExistsError" in r.stdout and "1 units failed in this run" in r.stdout
    fail = json.loads((store / "failures" / f"{bad.name}.json").read_text())
    assert fail["key"] == bad.key and fail["error"] == "FileExistsError" and bad.key in fail["message"]
    assert fail["traceback"] and fail["hardware"] and fail["commit"] and fail["failed"] and fail["host"]
    done = {json.loads(f.read_text())["key"] for f in (store / "units").glob("*.json")}
    assert bad.key not in done                                 # never mistaken for a result
    # the other arm went all the way (2 sweep, 2 refine, 2 final, 1 ladder); the failed unit's arm waits after its sweep
    assert len(done) == 8 and done <= set(scores(local)), sorted(done)

    s = cli("status", store)
    assert s.returncode == 0 and "1 units failed" in s.stdout and bad.name in s.stdout and "FileExistsError" in s.stdout
    js = [json.loads(l) for l in cli("status", store, "--json").stdout.splitlines()]
    assert [j["failed"] for j in js if "failed" in j] == [bad.name]
    assert "## Units that failed" in cli("report", store).stdout

    again = cli("run", store, "--jobs", 2, "--work", work, "--no-reuse")  # not retried unless asked
    assert again.returncode == 0 and "0 units finished" in again.stdout, again.stdout[-2000:]
    assert "1 units failed in an earlier run and were not retried" in again.stdout

    (work / bad.key).unlink()
    r = cli("run", store, "--jobs", 2, "--work", work, "--no-reuse", "--retry-failed")
    assert r.returncode == 0 and "6 units finished" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    assert scores(store) == scores(local)                      # the whole study, as if nothing had failed
    assert not list((store / "failures").glob("*.json"))       # the failure record went with the success
    assert "failed" not in cli("status", store).stdout


@needs_data
def test_unit_held_by_another_run_is_named(tmp_path):
    "A live process holds the first unit's lock: that unit is reported with its holder, and another unit trains."
    store, work = tmp_path / "store", tmp_path / "work"
    assert cli("plan", store, "--study", "smoke").returncode == 0
    held = first_unit(store)
    work.mkdir()
    code = (f"import fcntl, sys, time; f = open({str(work / (held.key + '.lock'))!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
            "f.write('the holder test'); f.flush(); print('held', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = cli("run", store, "--jobs", 1, "--max-units", 1, "--work", work, "--no-reuse")
    finally:
        holder.kill(); holder.wait()
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert f"not starting {held.name}: another run trains it (the holder test)" in r.stdout
    assert "1 units are trained by another run of this store" in r.stdout and "1 units finished" in r.stdout
    names = {f.stem for f in (store / "units").glob("*.json")}
    assert held.name not in names and len(names) == 1


def test_arguments_refused_up_front(tmp_path, capsys):
    """Each bad argument: exit 1 and one line naming the option, before the store is read (nothing trains). The command's
    own entry point, `dil_causal.cli.main`, in this process (the console script calls it; the other tests here run it)."""
    from dil_causal.cli import main
    from dil_causal.study import Store
    Store.create(tmp_path / "s", "smoke")
    cases = {("--time-limit", "nan"): "--time-limit must be a finite number of seconds >= 0 (0: no limit), got nan",
             ("--time-limit", "inf"): "--time-limit must be a finite number of seconds >= 0 (0: no limit), got inf",
             ("--time-limit", "-5"): "--time-limit must be a finite number of seconds >= 0 (0: no limit), got -5.0",
             ("--time_limit", "nan"): "--time-limit must be a finite number of seconds >= 0",   # the underscore spelling
             ("--jobs", "0"): "--jobs must be a whole number >= 1, got 0",
             ("--threads", "0"): "--threads must be a whole number >= 1, got 0",
             ("--max-units", "-1"): "--max-units must be a whole number >= 0, got -1",
             ("--shard", "2/2"): "'2/2'"}                                      # "shard must read i/N ...; got '2/2'"
    for args, says in cases.items():
        code = main(["study", "run", str(tmp_path / "s"), *args, "--work", str(tmp_path / "work")])
        err = capsys.readouterr().err
        assert code == 1 and says in err and len(err.strip().splitlines()) == 1, (args, err)
        assert err.startswith("dil-causal study run: error: ")
    assert not (tmp_path / "work").exists()


@needs_data
def test_shard_checked_when_nothing_is_pending(local, tmp_path):
    "A finished store: a bad shard is still an error, a good one finds nothing to do."
    store = tmp_path / "done"
    shutil.copytree(local, store)
    r = cli("run", store, "--shard", "3/2", "--work", tmp_path / "work")
    assert r.returncode == 1 and "i/N" in r.stderr
    r = cli("run", store, "--shard", "1/2", "--work", tmp_path / "work", "--no-reuse")
    assert r.returncode == 0 and "0 units finished" in r.stdout


@needs_data
def test_more_jobs_than_cores_warns(tmp_path):
    from dil_causal.study import Store, run as run_study
    Store.create(tmp_path / "s", "smoke")
    with pytest.warns(UserWarning, match="more than this machine's"):
        assert run_study(tmp_path / "s", jobs=(os.cpu_count() or 1) + 1, max_units=0, work=tmp_path / "w", reuse=False, progress=False) == []


def _immutable(path, on: bool) -> bool:
    "Make `path` refuse new files even to root (chattr +i); False where this filesystem or user cannot."
    if os.geteuid() != 0:
        path.chmod(0o555 if on else 0o755); return True
    return subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True).returncode == 0


def test_read_only_store_refused_before_training(tmp_path):
    from dil_causal.study import Store
    st = Store.create(tmp_path / "s", "smoke")
    if not _immutable(st.path / "units", True): pytest.skip("cannot make a folder read-only here (no chattr +i for root)")
    try:
        r = cli("run", st.path, "--work", tmp_path / "work", "--no-reuse")
    finally:
        _immutable(st.path / "units", False)
    assert r.returncode == 1 and "cannot take records" in r.stderr and str(st.path / "units") in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "work").exists()                    # refused before any unit was claimed or trained


def test_subcommands_list_only_their_options():
    h = cli("run", "--help")
    assert h.returncode == 0
    for opt in ("--time-limit", "--jobs", "--threads", "--shard", "--work", "--data", "--max-units", "--retry-failed",
                "--scheduler", "--no-reuse", "--reuse-from"):
        assert opt in h.stdout, opt
    for other in ("--save", "--json", "--study", "--time_limit"):
        assert other not in h.stdout, other
    s = cli("status", "--help").stdout
    assert "--json" in s and "--time-limit" not in s and "--save" not in s
    p = cli("plan", "--help").stdout
    assert "--study" in p and "--reuse-from" in p and "--jobs" not in p
    top = cli()
    assert top.returncode == 2 and all(a in top.stdout for a in ("plan", "run", "status", "report"))


@needs_data
def test_ensemble_engine_honours_shard_and_max_units(tmp_path):
    "The GPU path (engine \"ensemble\") runs through the same loop: --shard takes only its units, --max-units caps them."
    from dataclasses import replace
    from dil_causal.study import STUDIES, Store, in_shard, pending, study_root
    st = Store.create(tmp_path / "store", replace(STUDIES["smoke"], engine="ensemble"))
    sweep = pending(st, study_root())[0]
    shard = next(s for s in ("0/2", "1/2") if 0 < sum(in_shard(u.key, s) for u in sweep) < len(sweep))  # a shard of some, not all
    mine = {u.key for u in sweep if in_shard(u.key, shard)}
    r = cli("run", st.path, "--shard", shard, "--max-units", len(mine), "--work", tmp_path / "work", "--no-reuse")
    assert r.returncode == 0 and f"{len(mine)} units finished" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    assert {json.loads(f.read_text())["key"] for f in (st.path / "units").glob("*.json")} == mine
