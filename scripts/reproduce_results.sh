#!/usr/bin/env bash
# Re-run every figure of the README's "Measured figures" section, in the order the README gives them.
# Usage: bash scripts/reproduce_results.sh [PART ...]
#   parts: demo dp noise audit faults compare labels shift meters sweeps augment shift-parts headline (default: all, in that order)
# About 70 minutes on a 2-core machine without a GPU (the audit part alone: about 8). Writes docs/results/ and runs/; logs to runs/reproduce/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
LOG=runs/reproduce
mkdir -p "$LOG"
SEEDS=0,1,2,3,4
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(demo dp noise audit faults compare labels shift meters sweeps augment shift-parts headline)

step() {  # step NAME CMD...: run, log stdout+stderr, time it
  local name=$1; shift
  echo "== $name: $*" | tee -a "$LOG/steps.txt"
  local t0=$SECONDS
  "$@" >"$LOG/$name.log" 2>&1 || { echo "   FAILED (see $LOG/$name.log)" | tee -a "$LOG/steps.txt"; return 1; }
  echo "   $((SECONDS - t0)) s" | tee -a "$LOG/steps.txt"
}
fresh() {  # fresh DIR...: a run directory holds a checkpoint that a later run would resume: start clean
  rm -rf "$@"
}
students() {  # students OUT FLAGS...: the 5-seed comparison of every student row
  local out=$1; shift
  step "$(basename "$out")" "$PY" -m simulator compare --methods students --seeds "$SEEDS" "$@" --out "$out"
}
sweep() {  # sweep NAME FLAGS...: start vs DMSKD (and the teacher) over 5 seeds; only the summary is kept
  local out=docs/results/sweeps/$1; shift
  step "sweep-$(basename "$out")" "$PY" -m simulator compare --methods teacher,cloud-distilled,dmskd --seeds "$SEEDS" \
    "$@" --out "$out"
  rm -rf "$out"/seed-*
}

for part in "${parts[@]}"; do
  case $part in
    demo)  # make demo's configuration (Makefile DEMO_ARGS), then the digits default
      fresh runs/demo runs/demo-digits
      step demo "$PY" -m simulator run --task italy-power --device-shift 0.5 --rounds 30 --run-dir runs/demo
      step demo-digits "$PY" -m simulator run --run-dir runs/demo-digits ;;
    dp)
      fresh runs/dp-central runs/dp-local runs/dp-central-sampled
      step dp-central "$PY" -m simulator run --dp central --target-epsilon 8 --insecure-seeded-noise --run-dir runs/dp-central
      step dp-local "$PY" -m simulator run --dp local --target-epsilon 8 --insecure-seeded-noise --run-dir runs/dp-local
      step dp-scaling "$PY" -m simulator dp-scaling --fleet-sizes 10,100,1000,3000 --insecure-seeded-noise --out docs/results
      step dp-sampled "$PY" -m simulator run --dp central --target-epsilon 8 --sampling-rate 0.5 --insecure-seeded-noise \
        --run-dir runs/dp-central-sampled ;;
    noise)  # discrete vs float Gaussian, Poisson sampling vs first-K; 100 and 10 devices, 5 seeds
      step noise-study "$PY" -m simulator noise-study --seeds "$SEEDS" --out docs/results/noise-study
      step noise-study-10 "$PY" -m simulator noise-study --seeds "$SEEDS" --devices 10 --out docs/results/noise-study-10 ;;
    audit)  # membership inference and the canary epsilon lower bound, DP off / central / local (noise from OS entropy)
      step audit "$PY" -m simulator audit --seeds "$SEEDS" --out docs/results/audit ;;
    faults)  # issue 10: the chaos table (real processes, mosquitto), the fuzzer, the reassembly flood
      fresh runs/chaos
      step chaos "$PY" -m simulator chaos --rounds 30 --out runs/chaos
      cp runs/chaos/chaos.md docs/results/chaos.md
      step fuzz "$PY" scripts/fuzz_round_inbox.py 100000
      step reassembly "$PY" scripts/bench_reassembly_memory.py 1000 ;;
    compare) step compare "$PY" -m simulator compare --device-labels all --cold-start --out docs/results ;;
    labels)
      students docs/results/labels-none --device-labels none
      students docs/results/labels-0.1 --device-labels 0.1
      students docs/results/labels-all --device-labels all ;;
    shift)
      students docs/results/shift-0.25 --device-shift 0.25
      students docs/results/shift-0.5 --device-shift 0.5
      students docs/results/shift-0.5-rounds-30 --device-shift 0.5 --rounds 30 ;;
    meters)
      for task in italy-power plaid; do
        students "docs/results/$task-labels-none" --task "$task"
        students "docs/results/$task-labels-0.1" --task "$task" --device-labels 0.1
        students "docs/results/$task-labels-all" --task "$task" --device-labels all
        students "docs/results/$task-shift-0.5" --task "$task" --device-shift 0.5
      done
      students docs/results/italy-power-shift-0.5-rounds-30 --task italy-power --device-shift 0.5 --rounds 30
      students docs/results/plaid-teacher-80-labels-none --task plaid --teacher-epochs 80
      students docs/results/plaid-teacher-80-shift-0.5-rounds-30 --task plaid --teacher-epochs 80 --device-shift 0.5 \
        --rounds 30 ;;
    sweeps)
      for task in digits italy-power; do
        sweep "$task-shift-0.5-rounds-30" --task "$task" --device-shift 0.5 --rounds 30
        sweep "$task-shift-0.5-alpha-0" --task "$task" --device-shift 0.5 --rounds 30 --alpha 0
        sweep "$task-shift-0.5-clip-10" --task "$task" --device-shift 0.5 --rounds 30 --clip 10
        sweep "$task-shift-0.5-tau-4" --task "$task" --device-shift 0.5 --rounds 30 --tau 4
        sweep "$task-shift-0.5-cloud-0.15" --task "$task" --device-shift 0.5 --rounds 30 --cloud-fraction 0.15
      done ;;
    augment)
      sweep digits-shift-0.5-augment-0.5 --device-shift 0.5 --cloud-augment 0.5
      sweep digits-shift-0.5-augment-0.5-rounds-30 --device-shift 0.5 --cloud-augment 0.5 --rounds 30
      sweep digits-shift-0.5-augment-0.5-rounds-30-alpha-0 --device-shift 0.5 --cloud-augment 0.5 --rounds 30 --alpha 0
      sweep italy-power-shift-0.5-augment-0.5-rounds-30 --task italy-power --device-shift 0.5 --cloud-augment 0.5 \
        --rounds 30 ;;
    shift-parts)
      for p in gain offset translate noise missing; do
        sweep "digits-shift-0.5-only-$p" --device-shift 0.5 --shift-parts "$p"
      done ;;
    headline)  # the runs of the README's first section, when the rest is already done
      students docs/results/italy-power-shift-0.5-rounds-30 --task italy-power --device-shift 0.5 --rounds 30
      students docs/results/shift-0.5-rounds-30 --device-shift 0.5 --rounds 30
      students docs/results/plaid-teacher-80-labels-none --task plaid --teacher-epochs 80
      students docs/results/plaid-teacher-80-shift-0.5-rounds-30 --task plaid --teacher-epochs 80 --device-shift 0.5 \
        --rounds 30 ;;
    *) echo "unknown part $part; expected demo dp audit compare labels shift meters sweeps augment shift-parts headline" >&2
       exit 2 ;;
  esac
done
