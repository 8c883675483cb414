#!/usr/bin/env bash
# Grow the map's stores (issue "Where does ERM fail on unseen noise, and does DIL help there?") for SECONDS seconds,
# in the issue's priority order: each store's missing units, no unit started that its measured pace says would end
# after the deadline. Finished units are files in bench/results/study-*/units/: commit them as they land; the next
# call continues where this one stopped.
#
#   bash bench/grow_map.sh SECONDS [JOBS]      e.g. bash bench/grow_map.sh 7200 2   (two processes, one thread each)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bash bench/grow_map.sh SECONDS [JOBS]" >&2; exit 2; }
DEADLINE=$(( $(date +%s) + $1 )); JOBS=${2:-2}
BIN=${BIN:-$(dirname "$(command -v dil-causal || echo .venv/bin/dil-causal)")}
export OMP_NUM_THREADS=1
ORDER=(cpu-denoise-dncnn              # 1. capacity: the 0.56 M DnCNN at 3,600 passes
       cpu-denoise-dncnn-tiny-32k     # 2-3. convergence: 10 seeds at 32,400 passes, the ladder to 97,200
       cpu-variants-dncnn-tiny        # 6. DIL_pf, DIL_ss, DIL_ps beside DIL_sf
       cpu-denoise-rrdb-small         # 8. the 0.38 M RRDB at 3,600 passes
       cpu-lir-sigma25                # 9. LIR at sigma 25 for 10,000 steps
       cpu-sensitivity-rrdb-small)    # 8, checked: ERM one step below its pick (after its seed 2 diverged)
for s in "${ORDER[@]}"; do
  left=$(( DEADLINE - $(date +%s) )); [ "$left" -lt 60 ] && break
  store=bench/results/study-$s
  [ -f "$store/study.json" ] || "$BIN/dil-causal" study plan "$store" --study "$s" | head -1
  echo "== $s: $left s left ($(date -u +%H:%M) UTC)"
  "$BIN/dil-causal" study run "$store" --jobs "$JOBS" --time-limit "$left"
done
for s in "${ORDER[@]}"; do echo "== $s"; "$BIN/dil-causal" study status "bench/results/study-$s" | tail -n +2; done
