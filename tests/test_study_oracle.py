"""The oracle arm is a reference: it trains on every degree of its task and never enters another arm's selection."""
from pathlib import Path

import pytest

from dil_causal.study import STUDIES, TASKS, make_unit, plan, read_store, selections
from dil_causal.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]
NARROW = REPO / "bench" / "results" / "study-cpu-narrow-dncnn-tiny"


def test_oracle_trains_on_every_degree():
    for name in ("cpu-narrow-dncnn-tiny", "cpu-denoise-dncnn-tiny-oracle", "gpu-denoise"):
        s = STUDIES[name]
        task = TASKS[s.task].confounder_list()
        seen = [c for c in TrainConfig(confounders=s.config("oracle", {"lr": 1e-3}, 1, 3600)["confounders"]).confounder_list() if c.seen]
        assert [(c.family, c.degree) for c in seen] == [(c.family, c.degree) for c in task], name
        erm = [c for c in TrainConfig(confounders=s.config("ERM", {"lr": 1e-3}, 1, 3600)["confounders"]).confounder_list() if c.seen]
        assert len(erm) == TASKS[s.task].n_seen() < len(seen), name


@pytest.mark.skipif(not (NARROW / "study.json").is_file(), reason=f"{NARROW} is not in this checkout")
def test_oracle_never_enters_another_arms_selection():
    view = read_store(NARROW)
    st, records, digest = view.store, view.records, view.digest
    chosen = selections(st.study, records, digest)
    assert chosen["oracle"] is not None, "the committed store has the oracle's selection"
    # without the oracle's records, or with its validation made absurdly good, every other arm picks the same rates
    no_oracle = {k: r for k, r in records.items() if r["unit"]["arm"] != "oracle"}
    boosted = {k: (dict(r, curve=[dict(c, val_psnr=c["val_psnr"] + 100) for c in r["curve"]]) if r["unit"]["arm"] == "oracle" else r)
               for k, r in records.items()}
    for alt in (no_oracle, boosted):
        again = selections(st.study, alt, digest)
        for arm in st.study.arms:
            if arm != "oracle": assert again[arm] == chosen[arm], arm
    # the plan's units of the other arms do not depend on the oracle's records either
    others = lambda units: sorted(u.key for u in units if u.arm != "oracle")
    assert others(plan(st.study, records, digest)[0]) == others(plan(st.study, no_oracle, digest)[0])
    # and an oracle's unit is keyed apart from ERM's at the same rates and seed (it trains on other data)
    u_o = make_unit(st.study, "final", "oracle", {"lr": 1e-3}, 1, 3600, digest)
    u_e = make_unit(st.study, "final", "ERM", {"lr": 1e-3}, 1, 3600, digest)
    assert u_o.key != u_e.key and u_o.config["confounders"] != u_e.config["confounders"]
