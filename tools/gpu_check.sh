#!/usr/bin/env bash
# One script for a lent GPU machine (no network, no install): GPU tests, `kernelpro eval` of
# every shipped task with its solution at full size, Nsight Compute metric tables, the
# evaluation-throughput bench and a small bench over tasks/level1.
#
#   PYTHONPATH=. OUT=/some/dir tools/gpu_check.sh [tests] [eval] [ncu] [throughput] [bench]
#   (default: all five)
#
# Writes to $OUT: env.txt, doctor.json, pytest-gpu.log, eval/*.json, results.md, ncu/*.csv,
# throughput.md, bench/ (bench.json, tasks.csv, fast_p.csv, report.html).
# Each part fits in one 10-minute device call; run them separately if time is short.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:-.}"
OUT="${OUT:-out/gpu_check}"
mkdir -p "$OUT/eval" "$OUT/ncu"
parts="${*:-tests eval ncu throughput bench}"
PY="${PYTHON:-python}"

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  "$PY" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
} > "$OUT/env.txt" 2>&1
"$PY" -m kernelpro.cli doctor --json > "$OUT/doctor.json" 2>&1

if [[ " $parts " == *" tests "* ]]; then
  "$PY" -m pytest -q -m gpu tests 2>&1 | tee "$OUT/pytest-gpu.log" | tail -5
fi

if [[ " $parts " == *" eval "* ]]; then
  {
    echo "| task | status | runtime ms | eager ms | compile ms | vs eager | vs compile | max abs err |"
    echo "|---|---|---|---|---|---|---|---|"
  } > "$OUT/results.md"
  for task in $(find tasks -name '*.py' | sort); do
    rel="${task#tasks/}"
    name="${rel//\//_}"
    "$PY" -m kernelpro.cli eval "$task" "examples/solutions/$rel" --json \
      > "$OUT/eval/${name%.py}.json" 2> "$OUT/eval/${name%.py}.err"
    "$PY" - "$OUT/eval/${name%.py}.json" "$rel" >> "$OUT/results.md" <<'PYEOF'
import json, sys
try:
    d = json.loads(open(sys.argv[1]).read().splitlines()[0])
except (IndexError, ValueError):
    print(f"| {sys.argv[2]} | no verdict | | | | | | |"); sys.exit()
f = lambda v, p=4: "-" if v is None else f"{v:.{p}g}"
status = d.get("status", "error") + ("" if d.get("correct") else f" ({d.get('reason')})")
print(f"| {sys.argv[2]} | {status} | {f(d.get('runtime_ms'))} | {f(d.get('eager_ms'))} | "
      f"{f(d.get('compile_ms'))} | {f(d.get('speedup_eager'), 3)} | "
      f"{f(d.get('speedup_compile'), 3)} | {f(d.get('max_abs_error'), 2)} |")
PYEOF
    tail -1 "$OUT/results.md"
  done
fi

if [[ " $parts " == *" ncu "* ]]; then
  NCU="$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | tail -1)"
  if [[ -z "$NCU" ]]; then
    echo "ncu not found: no metric tables captured" | tee "$OUT/ncu/README.txt"
  else
    for rel in level1/2_ReLU.py level1/4_Softmax.py level1/1_Square_matmul.py level2/1_Gemm_Bias_GELU.py; do
      name="${rel//\//_}"
      cmd=("$NCU" --csv --page raw --set full --launch-skip 1 --launch-count 1
           "$PY" tools/run_once.py "tasks/$rel" "examples/solutions/$rel")
      echo "${cmd[*]}" > "$OUT/ncu/${name%.py}.cmd"
      timeout 300 "${cmd[@]}" > "$OUT/ncu/${name%.py}.csv" 2> "$OUT/ncu/${name%.py}.err"
      echo "ncu $rel: exit $?"
      # kernelpro's own metric list, as `kernelpro profile` collects it (fixtures for the tools)
      mcmd=($("$PY" -c "import sys; from kernelpro.profile.ncu import ncu_command; print(' '.join(ncu_command(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4])))" "$NCU" "$PY" "tasks/$rel" "examples/solutions/$rel"))
      echo "${mcmd[*]}" > "$OUT/ncu/${name%.py}.metrics.cmd"
      timeout 300 "${mcmd[@]}" > "$OUT/ncu/${name%.py}.metrics.csv" 2> "$OUT/ncu/${name%.py}.metrics.err"
      "$PY" -m kernelpro.cli profile "tasks/$rel" "examples/solutions/$rel" --json \
        > "$OUT/ncu/${name%.py}.profile.json" 2> "$OUT/ncu/${name%.py}.profile.err"
    done
  fi
fi
if [[ " $parts " == *" throughput "* ]]; then
  timeout 580 "$PY" bench/throughput.py --out "$OUT/throughput.md" 2>&1 | tail -20
fi

if [[ " $parts " == *" bench "* ]]; then
  timeout 580 "$PY" -m kernelpro.cli bench tasks --level 1 --tasks 2-6 --budget 4 \
    --task-timeout 100 --out "$OUT/bench" 2>&1 | tail -30
  "$PY" -m kernelpro.cli report "$OUT/bench" > /dev/null 2>&1
fi
echo "results in $OUT"
