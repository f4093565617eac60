#!/usr/bin/env bash
# Runs the generalisation arms of configs/arms/ two at a time (1 thread each), resumably, in the
# background: bash scripts/run_arms.sh base global_logits frozen_all ...  (logs in runs/arms/NAME.log)
set -uo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
mkdir -p runs/arms
run() { colorization train --config "configs/arms/$1.yaml" --resume --no-progress >"runs/arms/$1.log" 2>&1; }
while (($#)); do
  run "$1" & a=$!
  if (($# > 1)); then run "$2" & b=$!; wait "$b"; shift; fi
  wait "$a"; shift
done
