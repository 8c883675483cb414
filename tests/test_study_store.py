"""dil_causal.study's store trusts nothing it reads (issue 36): every committed store reads whole; a crafted record of
each kind is listed with its reason and never counted; a link out of a store is never read or written through; a
record is written only under its unit's name; an unrelated store beside it is never read; other data is refused
with both digests named. Crafted from real records of the committed DnCNN-tiny store."""
import json, shutil
from pathlib import Path

import pytest

from conftest import DATA, ROOT, run, venv_bin
from dil_causal.study import STUDIES, make_unit, report, results, status, wall_time_text
from dil_causal.study.planning import read_store, unit_data
from dil_causal.study.store import Store, adopt, shares_runs

RESULTS = ROOT / "bench" / "results"
TINY = RESULTS / "study-cpu-denoise-dncnn-tiny"  # 70 committed records: sweep, refine, final (3 arms x 10 seeds), ladder
ENV = {"OMP_NUM_THREADS": "1"}


def cli(*args):
    return run([venv_bin("dil-causal"), "study", *map(str, args)], env=ENV)


def copy_store(src: Path, dst: Path) -> Path:
    "A store's study.json and records (no answer, no figure)."
    (dst / "units").mkdir(parents=True)
    shutil.copy(src / "study.json", dst / "study.json")
    for f in (src / "units").glob("*.json"): shutil.copy(f, dst / "units" / f.name)
    return dst


def record(store: Path, stage="final", arm="ERM", seed=1) -> dict:
    return json.loads(next((store / "units").glob(f"{stage}-{arm}-*-s{seed}-*.json")).read_text())


def listing(folder: Path, but: Path|None = None) -> dict:
    "Every path under `folder` (but those under `but`) with its kind, size and time: what a command must leave as it is."
    return {str(p): (p.is_symlink(), p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if but is None or not (p == but or but in p.parents)}


def left_out(out: str) -> dict:
    "The files a command lists as in no table (`excluded_text`): file -> 'kind: reason'."
    lines = out.split(" files of the store are in no table", 1)[1].splitlines()[1:] if " in no table" in out else []
    return dict(l.strip().split(": ", 1) for l in lines if l.startswith("  units/"))


def test_every_committed_store_reads_whole():
    stores = sorted(p.parent for p in RESULTS.glob("study-*/study.json"))
    assert len(stores) >= 11
    for s in stores:
        n = len(list((s / "units").glob("*.json")))  # counted first: a store still growing may gain a record meanwhile
        view = read_store(s)
        assert view.excluded == [], (s.name, view.excluded[:3])
        assert len(view.records) >= n, s.name


def crafted(store: Path, outside: Path) -> dict:
    "One file per fault beside the store's records: file -> (the kind it must be listed as, words its reason holds)."
    rec, units = record(store), store / "units"
    st = Store(store)
    digest = rec["data"]["digest"]
    other_rate = next(g for g in st.study.grid("ERM") if g != dict(rec["unit"]["rates"]))
    u = make_unit(st.study, "final", "ERM", other_rate, 1, rec["unit"]["passes"], digest)  # ERM seed 1 at unpicked rates
    drop = lambda k: {x: v for x, v in rec.items() if x != k}
    files = {
        "list.json": ([1, 2], "damaged", "a list, not a record"),
        "empty.json": ({}, "damaged", "no `key`"),
        "no-curve.json": (drop("curve"), "damaged", "no `curve`"),
        "empty-curve.json": (dict(rec, curve=[]), "damaged", "`curve` is empty"),
        "no-tests.json": (drop("tests"), "damaged", "no `tests`"),
        "key-edited.json": (dict(rec, key="0" * 24), "mismatched", "key 000000000000000000000000"),
        "other-data.json": (dict(rec, data=dict(rec["data"], digest="e" * 64)), "foreign", "trained on data eeeeeeeeeeeeeeee"),
        "other-study.json": (record(RESULTS / "study-cpu-denoise"), "foreign", "backbone 'rrdb-tiny' in the record"),
        "second-copy.json": (rec, "duplicate", f"the store's is units/{rec['name']}.json"),
        "climbing-name.json": (dict(rec, name="../../../escaped"), "mismatched", "named '../../../escaped'"),
        f"{u.name}.json": (dict(rec, key=u.key, name=u.name, unit=dict(rec["unit"], rates=[list(x) for x in u.rates]),
                                config=u.config), "extra", "not name it"),
    }
    for name, (content, _, _) in files.items(): (units / name).write_text(json.dumps(content))
    (units / "not-json.json").write_text("{not json")
    (outside / "record.json").write_text(json.dumps(record(store, seed=2)))
    (units / "link-out.json").symlink_to(outside / "record.json")
    (store / "kept").mkdir()
    shutil.copy(units / f"{rec['name']}.json", store / "kept" / "record.json")
    (units / "link-in.json").symlink_to(store / "kept" / "record.json")
    return {f"units/{k}": v[1:] for k, v in files.items()} | {
        "units/not-json.json": ("damaged", "not JSON"), "units/link-out.json": ("symlinked-out", "outside the store"),
        "units/link-in.json": ("duplicate", f"the store's is units/{rec['name']}.json")}


def test_crafted_records_are_listed_and_never_counted(tmp_path):
    clean = copy_store(TINY, tmp_path / "clean")
    store = copy_store(TINY, tmp_path / "crafted")
    Store(store).record_data(dict(train="CBSD432", digest=record(TINY)["data"]["digest"]))  # as `plan` names it
    outside = tmp_path / "outside"; outside.mkdir()
    expected = crafted(store, outside)
    before = listing(tmp_path, but=store)
    r = cli("status", store)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith(status(clean).to_string(index=False) + "\n\n")  # nothing counted: the clean store's cells
    said = left_out(r.stdout)
    assert set(said) == set(expected), set(said) ^ set(expected)     # nothing dropped without a word
    for f, (kind, words) in expected.items(): assert said[f].startswith(kind + ": ") and words in said[f], (f, said[f])
    r = cli("report", store, "--save")
    assert r.returncode == 0, r.stderr[-2000:]
    answer = report(clean, write=False)
    assert r.stdout.startswith(answer)                               # the same answer, byte for byte, and after it
    assert r.stdout[len(answer):].lstrip("\n").startswith(f"{len(expected)} files of the store are in no table")  # only the list
    assert left_out(r.stdout) == said
    assert listing(tmp_path, but=store) == before                     # nothing written outside the store
    assert not list(tmp_path.parent.glob("escaped*")) and not list(tmp_path.glob("**/escaped*"))


def test_a_study_cut_leaves_its_records_out_by_name(tmp_path):
    "Seeds 10 -> 9 and an arm removed from study.json: their records are listed as extra and in no table or sentence."
    store = copy_store(TINY, tmp_path / "s")
    meta = json.loads((store / "study.json").read_text())
    arms = meta["study"]["arms"]
    meta["study"].update(seeds=meta["study"]["seeds"][:-1], arms=arms[:2])
    (store / "study.json").write_text(json.dumps(meta))
    res = results(store)
    out = set()
    for f in (store / "units").glob("*.json"):
        u = json.loads(f.read_text())["unit"]
        if u["arm"] == arms[2] or (u["stage"] == "final" and u["seed"] == 10): out.add(f"units/{f.name}")
    assert {x["file"] for x in res.excluded} == out and {x["kind"] for x in res.excluded} == {"extra"}
    assert set(res.units.arm) == set(arms[:2]) and res.tests.seed.max() == 9
    assert arms[2] not in wall_time_text(res)  # the time per pass reads the records the tables read


def test_a_changed_protocol_or_an_edited_key_counts_nothing_of_it(tmp_path):
    store = copy_store(TINY, tmp_path / "s")
    rec = record(store, arm="DIL_sf_independent", seed=3)
    (store / "units" / f"{rec['name']}.json").write_text(json.dumps(dict(rec, key="f" * 24)))
    res = results(store)
    assert [(x["file"], x["kind"]) for x in res.excluded] == [(f"units/{rec['name']}.json", "mismatched")]
    fin = res.tests[res.tests.arm == "DIL_sf independent"]
    assert 3 not in set(fin.seed) and set(fin.seed) == set(range(1, 11)) - {3}
    assert rec["name"] in res.missing                       # the unit is missing, and nowhere in the tables
    meta = json.loads((store / "study.json").read_text())
    meta["study"]["protocol"] = 2
    (store / "study.json").write_text(json.dumps(meta))
    res = results(store)
    assert res.tests.empty and {x["kind"] for x in res.excluded} == {"foreign"}
    assert all("protocol 1; the study is protocol 2" in x["reason"] for x in res.excluded if x["file"] != f"units/{rec['name']}.json")
    assert status(store).seeds_done.sum() == 0


def test_report_save_replaces_links_and_reads_none_out(tmp_path):
    store = copy_store(RESULTS / "study-cpu-denoise", tmp_path / "s")
    outside = tmp_path / "outside"; outside.mkdir()
    (outside / "victim.png").write_text("not a figure"); (outside / "victim.md").write_text("not an answer")
    (store / "curves.png").symlink_to(outside / "victim.png"); (store / "answer.md").symlink_to(outside / "victim.md")
    shutil.move(next((store / "units").glob("final-ERM-*-s5-*.json")), outside / "seed5.json")
    (store / "units" / "seed5.json").symlink_to(outside / "seed5.json")  # a valid record, reached through a link out
    before = listing(tmp_path, but=store)
    r = cli("report", store, "--save")
    assert r.returncode == 0, r.stderr[-2000:]
    assert left_out(r.stdout) == {"units/seed5.json": f"symlinked-out: a link to {outside / 'seed5.json'}, outside the store (not read)"}
    assert listing(tmp_path, but=store) == before            # the files the links pointed to are untouched
    assert not (store / "curves.png").is_symlink() and (store / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert not (store / "answer.md").is_symlink() and (store / "answer.md").read_text() + "\n" == r.stdout
    assert "1 planned units are not in the store" in r.stdout and "final-ERM-" in r.stdout  # seed 5 of ERM: missing


def test_records_are_written_under_their_units_name_only(tmp_path):
    "A sibling's record whose name climbs out is never copied; a loop over `adopt` ends; no write leaves the store."
    shared = tmp_path / "shared"
    mine = Store.create(shared / "mine", STUDIES["cpu-denoise-dncnn-tiny"])
    lender = copy_store(TINY, shared / "lender")  # the same study on the same data: a sibling that lends runs
    rec = record(TINY)
    (lender / "units" / f"{rec['name']}.json").write_text(json.dumps(dict(rec, name="../../../escaped")))
    rates, digest = dict(rec["unit"]["rates"]), rec["data"]["digest"]
    units = [make_unit(mine.study, "final", "ERM", rates, s, rec["unit"]["passes"], digest) for s in (1, 2)]
    before = listing(tmp_path, but=mine.path)
    got = adopt(mine, units)
    assert [r["unit"]["seed"] for r in got] == [2]
    assert [f.name for f in (mine.path / "units").iterdir()] == [f"{units[1].name}.json"]
    assert adopt(mine, units[:1]) == []                          # the crafted one is never copied: it would train here
    assert listing(tmp_path, but=mine.path) == before
    with pytest.raises(ValueError, match="not written: mismatched: named '../../x'"): mine.write(dict(rec, name="../../x"))
    bad = dict(rec, unit=dict(rec["unit"], rates=[["lr", rates["lr"]], ["../../x", 1.0]]))
    with pytest.raises(ValueError, match="not written: foreign: rates"): mine.write(bad)
    assert listing(tmp_path, but=mine.path) == before and not list(tmp_path.parent.glob("**/escaped*"))


def test_an_unrelated_store_beside_it_is_never_read(tmp_path):
    "In a shared folder only the same study on the same data lends runs unasked; a store the user names is read."
    shared = tmp_path / "shared"
    mine = Store.create(shared / "mine", STUDIES["cpu-denoise-dncnn-tiny"])
    alien = Store.create(shared / "alien", STUDIES["cpu-denoise"])           # another backbone
    other_data = Store.create(shared / "other-data", STUDIES["cpu-denoise-dncnn-tiny"])
    other_data.record_data(dict(train="CBSD432", digest="e" * 64))
    rec = record(TINY, seed=3)
    for s in (alien, other_data): (s.path / "units" / f"{rec['name']}.json").write_text(json.dumps(rec))
    mine.record_data(dict(train="CBSD432", digest=rec["data"]["digest"]))
    assert shares_runs(mine, alien).startswith("another study: backbone 'rrdb-tiny' there, 'dncnn-tiny' here")
    assert shares_runs(mine, other_data).startswith("other data: eeeeeeeeeeeeeeee")
    unit = make_unit(mine.study, "final", "ERM", dict(rec["unit"]["rates"]), 3, rec["unit"]["passes"], rec["data"]["digest"])
    assert adopt(mine, [unit]) == []
    got = adopt(mine, [unit], stores=[alien.path])              # named: read, checked, copied
    assert [r["key"] for r in got] == [unit.key] and got[0]["reused_from"] == "alien"


def test_records_of_two_data_without_a_named_one_are_an_error_naming_them(tmp_path):
    store = copy_store(TINY, tmp_path / "s")
    rec, st = record(store, seed=4), Store(store)
    u = make_unit(st.study, "final", "ERM", dict(rec["unit"]["rates"]), 4, rec["unit"]["passes"], "e" * 64)
    (store / "units" / f"{u.name}.json").write_text(json.dumps(dict(rec, key=u.key, name=u.name, data=dict(rec["data"], digest="e" * 64))))
    with pytest.raises(ValueError, match="2 different data"): Store(store).scan()
    r = run([venv_bin("dil-causal"), "study", "status", str(store)], env={**ENV, "DIL_DATA": str(tmp_path / "no-data")})
    assert r.returncode == 1
    for words in ("trained on 2 different data and study.json names none", rec["data"]["digest"][:16], "70 records",
                  f"eeeeeeeeeeeeeeee… (1 records, e.g. units/{u.name}.json)", "--data ROOT"):
        assert words in r.stderr, (words, r.stderr[-1500:])
    st.record_data(dict(train="CBSD432", digest=rec["data"]["digest"]))   # study.json names the data, as `plan --data` does:
    assert [(x["file"], x["kind"]) for x in read_store(store).excluded] == [(f"units/{u.name}.json", "foreign")]  # the rest is foreign


def test_an_invalid_study_json_is_named(tmp_path):
    store = copy_store(TINY, tmp_path / "s")
    (store / "study.json").write_text('{"study": {"task": "denoise", "arms": ["ERM", "no-such-arm"]}}')
    with pytest.raises(ValueError, match="unknown arms"): Store(store)
    (store / "study.json").write_text("{not json")
    r = cli("status", store)
    assert r.returncode == 1 and f"{store / 'study.json'}: not JSON" in r.stderr, r.stderr[-1500:]


def test_other_data_is_refused_naming_both_digests(tmp_path, shared_data):
    "A store planned on one data root and run on another: refused before any unit trains, with the --data to pass."
    root = tmp_path / "data"; (root / "CBSD432").mkdir(parents=True)
    for f in sorted((shared_data / "CBSD432_jpg").glob("*.jpg"))[:40]: shutil.copy(f, root / "CBSD432" / f.name)
    store = tmp_path / "store"
    r = cli("plan", store, "--study", "smoke", "--data", root)
    assert r.returncode == 0, r.stderr[-2000:]
    named = Store(store).data
    assert named["digest"] == unit_data(STUDIES["smoke"], root) and named["root"] == str(root) and named["tests"] == {}
    r = cli("run", store, "--work", tmp_path / "work")           # the default data root: other files
    assert r.returncode == 1
    theirs = unit_data(STUDIES["smoke"], shared_data)
    for words in (named["digest"], theirs, f"--data {root}"): assert words in r.stderr, (words, r.stderr[-1500:])
    assert list((store / "units").iterdir()) == []              # nothing trained
