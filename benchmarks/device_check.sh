#!/usr/bin/env bash
# The scale-out measurements of issue "Scale out", in one run on the GPU machine (16 cores,
# one H200; the `device` tool, ~10 minutes): 1Lbb on 16 cores one at a time and in
# lockstep, on the GPU (one worker; eight sharing it, building models side by side), sbottom
# RegionA on the GPU, then the default path's scaling at 1-16 workers.
#
# Here, once:   bash ../shared/tools/device-wheels.sh
# Then one device `run` with carry [".whl"], timeout_s 600, the command:
#   bash benchmarks/device_check.sh
# Tables go to $OUT (device_check.txt) and to the output; paste them into NOTES.md.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/benchmarks
out=${OUT:-/tmp}/device_check.txt
export FITAAS_CACHE=/tmp/fitaas-cache
run() {  # a step that fails or runs out of time leaves the others' tables
  echo "### $*" | tee -a "$out"
  timeout "$1" "${@:2}" 2>&1 | tee -a "$out"
}
nvidia-smi -L | tee -a "$out"
run 150 python3 benchmarks/scan.py --pallet 1Lbb --skip-plain --workers 16 \
  --engines local,local+lockstep
run 120 python3 benchmarks/scan.py --pallet 1Lbb --skip-plain --engines local+gpu,local+gpu
run 90 python3 benchmarks/scan.py --pallet 1Lbb --skip-plain --workers 8 --engines local+gpu
run 90 python3 benchmarks/scan.py --pallet sbottom/RegionA --skip-plain --workers 8 \
  --engines local+gpu
run 150 python3 benchmarks/scaling.py --pallets 1Lbb,sbottom/RegionA --workers 1,2,4,8,16
