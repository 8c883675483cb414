"""The report's sections as records, and the oracle yardstick: the gap oracle − ERM, each arm's share of it (Fieller)."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dil_causal import study as S

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
ANSWERED = sorted(p.parent for p in RESULTS.glob("study-*/answer.md"))
NARROW = RESULTS / "study-cpu-narrow-dncnn-tiny"


@pytest.mark.parametrize("store", ANSWERED, ids=[p.name for p in ANSWERED])
def test_reports_render_their_committed_answer(store):
    "Every committed store's report, rendered from its units through `SECTIONS`, is its committed answer.md, byte for byte."
    assert S.report(store, write=False) == (store / "answer.md").read_text()


def test_sections_are_one_explicit_registry():
    "Each section is a `Section` record in one dict; `answer_text` prints those that apply, in the dict's order."
    assert all(isinstance(s, S.Section) for s in S.SECTIONS.values())
    res = S.results(RESULTS / "study-cpu-denoise")
    tables = S.section_tables(res)
    assert "oracle" not in tables and "nothing yet" not in tables                # no oracle arm; units there
    heads = [line for line in S.answer_text(res).splitlines() if line.startswith("## ")]
    assert heads == [S.SECTIONS[n].render(res, t).splitlines()[0] for n, t in tables.items()]


def test_share_interval_exact_and_unbounded():
    gap = np.array([4.0, 5.0, 6.0, 5.5, 4.5])
    assert np.allclose(S.ratio_interval(0.4 * gap, gap), (0.4, 0.4, 0.4))      # every seed recovers 40 %
    r, lo, hi = S.ratio_interval([0.1, -0.2, 0.3], [0.5, -0.4, 0.1])          # a gap of 0.07 ± 1.1 dB: no gap to share
    assert (lo, hi) == (-math.inf, math.inf) and math.isclose(r, 0.2 / 0.2)
    with pytest.raises(ValueError, match="paired"): S.ratio_interval([1, 2], [1, 2, 3])


def test_share_interval_covers_the_known_share():
    "Simulated 10-seed tables whose true share of the mean gap is 0.3: the interval holds it about 95 % of the time."
    rng, hits, draws = np.random.default_rng(7), 0, 1500
    for _ in range(draws):
        g = rng.normal(4.0, 1.5, 10)                  # oracle − ERM per seed
        d = 0.3 * g + rng.normal(0, 1.0, 10)          # arm − ERM
        _, lo, hi = S.ratio_interval(d, g)
        hits += lo <= 0.3 <= hi
    assert 0.93 <= hits / draws <= 0.97, hits / draws


def _narrow_results(arms=("ERM", "DIL_sf independent", "oracle"), share=0.25, gap_mean=None, seeds=range(1, 6)) -> S.Results:
    "Final test rows of the narrow task with a known answer: oracle − ERM = the gap, DIL − ERM = `share` of it, per seed."
    rng, rows = np.random.default_rng(1), []
    for s in seeds:
        for c in S.TASKS["denoise-narrow"].confounder_list():
            erm = 40 - c.degree / 3 + rng.normal(0, 0.3)
            gap = -2.0 if c.seen else (c.degree / 10 if gap_mean is None else gap_mean) + rng.normal(0, 0.5)
            psnr = {"ERM": erm, "oracle": erm + gap, "DIL_sf independent": erm if c.seen else erm + share * gap}
            rows += [dict(arm=a, seed=s, dataset=ds, family=c.family, degree=c.degree, seen=c.seen, psnr=psnr[a], weights="final")
                     for a in arms for ds in ("CBSD68", "Kodak24")]
    study = S.Study(task="denoise-narrow", backbone="dncnn-tiny", arms=arms)
    empty = lambda *cols: pd.DataFrame(columns=list(cols))   # as `results` reads a store without such records
    return S.Results(study, empty("stage", "arm", "seed", "name", "passes", "val_psnr"), pd.DataFrame(rows),
                     empty("arm", "seed", "passes", "dataset", "degree", "psnr"), empty("stage", "arm", "seed", "passes"), {}, [], [])


def test_oracle_section_prints_gap_difference_and_share():
    res = _narrow_results()
    t = S.oracle_table(res).set_index(["dataset", "group", "arm"])
    assert np.allclose(t.loc[("CBSD68", "unseen σ 30–50", "DIL_sf independent"), ["share", "share_lo", "share_hi"]].astype(float), 0.25)
    assert np.allclose(t.loc[("Kodak24", "seen σ 5, 10", "oracle"), ["gap", "gap_ci"]].astype(float), [-2.0, 0.0])   # the oracle's cost
    text = S.oracle_text(res)
    row = next(l for l in text.splitlines() if l.startswith("| CBSD68 | unseen σ 75 | DIL_sf independent | 5 |"))
    gap, diff = t.loc[("CBSD68", "unseen σ 75", "DIL_sf independent"), ["gap", "diff"]]
    assert f"| {gap:+.2f} ± " in row and f"| {diff:+.2f} ± " in row and row.endswith("| 25 % (25 to 25 %) |")   # all three, one row
    assert "| Kodak24 | seen σ 5, 10 | 5 | -2.00 ± 0.00 |" in text
    words = S.in_words(res)
    assert "**unseen σ 30–50** (CBSD68): the oracle is +" in words and "25 % (25 to 25 %) of the gap" in words, words


def test_no_gap_is_not_bounded_but_still_printed():
    "Where the oracle is no better than ERM the share says so, and the gap and the difference stand beside it."
    res = _narrow_results(gap_mean=0.0, share=0.5)
    t = S.oracle_table(res)
    r = t[(t.dataset == "CBSD68") & (t.group == "unseen σ 30–50") & (t.arm == "DIL_sf independent")].iloc[0]
    assert abs(r.gap) <= r.gap_ci and np.isinf(r.share_lo)
    row = next(l for l in S.oracle_text(res).splitlines() if l.startswith("| CBSD68 | unseen σ 30–50 | DIL_sf independent |"))
    assert row.endswith("| not bounded: no gap |") and S.plus_minus(r.gap, r.gap_ci) in row and S.plus_minus(r["diff"], r.diff_ci) in row


def test_a_study_without_oracle_has_no_oracle_section_or_columns():
    res = _narrow_results(arms=("ERM", "DIL_sf independent"))
    assert S.oracle_table(res).empty and "oracle" not in S.section_tables(res)
    m = S.study_map([RESULTS / "study-cpu-denoise"])
    assert not {"gap", "share"} & set(m.columns)


@pytest.mark.skipif(not (NARROW / "study.json").is_file(), reason=f"{NARROW} is not in this checkout")
def test_oracle_store_map_and_figure():
    "The first oracle cell: its map rows carry the gap and each arm's share; the figure names them in words, 9 pt and up."
    m = S.study_map([NARROW])
    if m.empty: pytest.skip("fewer than two paired seeds yet")
    assert "oracle" not in set(m.arm) and {"gap", "gap_ci", "share", "share_lo", "share_hi", "oracle_n"} <= set(m.columns)
    fig = S.plot_map(m)
    fig.canvas.draw()
    texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_fontsize")) if t.get_visible() and t.get_text().strip()]
    assert not [t.get_text() for t in texts if t.get_text() in m.columns]
    assert min(t.get_fontsize() for t in texts) >= 9
    assert fig.axes[2].get_ylabel() == "oracle − tuned ERM,\nunseen σ 30–50 (dB)"
    t = S.answer_table([NARROW], ["input", "ERM", "oracle"])
    assert list(t.arm) == ["input", "ERM", "oracle"] and t.psnr.iloc[0] < t.psnr.iloc[1] < t.psnr.iloc[2]   # the oracle is above ERM


@pytest.mark.skipif(not (NARROW / "study.json").is_file(), reason=f"{NARROW} is not in this checkout")
def test_partial_oracle_store(tmp_path):
    "A store the oracle has not reached yet has no oracle section; with one oracle seed, shares say there is no interval."
    import shutil
    units = sorted((NARROW / "units").glob("*.json"))
    for keep, name in ((lambda f: "final-oracle" not in f.name, "no-oracle"), (lambda f: "final-oracle" not in f.name or "-s1-" in f.name, "one-seed")):
        (tmp_path / name / "units").mkdir(parents=True)
        shutil.copy(NARROW / "study.json", tmp_path / name / "study.json")
        for f in filter(keep, units): shutil.copy(f, tmp_path / name / "units" / f.name)
    res = S.results(tmp_path / "no-oracle")
    assert S.oracle_table(res).empty and "oracle" not in S.section_tables(res)
    assert "## The failure DIL must remove" not in S.answer_text(res) and "## Not measured yet" in S.answer_text(res)
    text = S.oracle_text(S.results(tmp_path / "one-seed"))
    assert "| CBSD68 | unseen σ 30–50 | DIL_sf independent | 1 |" in text and "(one seed: no interval)" in text, text
