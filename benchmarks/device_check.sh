#!/usr/bin/env bash
# Device check for one GPU machine with JAX (accelerator build) and PyTorch installed, run from this checkout
# without installing it (PYTHONPATH=.) and without installing anything else; under 8 minutes.
#
#   benchmarks/device_check.sh [--smoke] [OUT_DIR]     (OUT_DIR: default $OUT, else benchmarks/results/device_check)
#
# 1. the tests that exercise the layers, generation and the diffusion solver, on the device (120 s at most),
#    with float32 products at full precision (JAX_DEFAULT_MATMUL_PRECISION=highest: the tests compare to 1e-5);
# 2. benchmarks/device_check.py: the paper preset's training iteration at batch 32 beside the PyTorch
#    reference, 512^3 periodic generation and a 256^3 tortuosity solve, at the libraries' default precision.
# Writes OUT_DIR/tests.txt, tests.xml, the parts' JSON and logs, and OUT_DIR/device_check.json.
# --smoke: tiny sizes, a few tests and 5-10x the time limits, to check the script on any machine (a loaded
# 2-core CPU: 10-20 minutes).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=.
smoke=""
tests_limit=120
bench_limit=330
if [ "${1:-}" = "--smoke" ]; then smoke="--smoke"; tests_limit=600; bench_limit=3600; shift; fi
out_dir="${1:-${OUT:-benchmarks/results/device_check}}"
mkdir -p "$out_dir"

tests=(tests/test_layers_fast.py tests/test_layers.py tests/test_generate.py tests/test_metrics_tortuosity.py)
# the forced-path parametrisations of the CPU forms (64 + 16 + 24 cases) repeat one XLA computation on a
# GPU: the formulation tests compare both forms there instead; TauFactor's references are not on the machine
select=(-k "not conv_paths and not kernel_gradient_layouts and not taufactor")
if [ -n "$smoke" ]; then select=(-k "formulation or point_layers or straight_channels or output_sizes"); fi
start=$(date +%s)
JAX_DEFAULT_MATMUL_PRECISION=highest timeout "$tests_limit" python -m pytest -q -x -p no:cacheprovider -rs \
    --junitxml="$out_dir/tests.xml" "${tests[@]}" "${select[@]}" > "$out_dir/tests.txt" 2>&1
tests_status=$?
echo "tests: exit status $tests_status ($(( $(date +%s) - start )) s; 124: over the $tests_limit s limit)," \
     "$(tail -n 1 "$out_dir/tests.txt")"

timeout "$bench_limit" python -m benchmarks.device_check --out "$out_dir" $smoke > /dev/null
bench_status=$?
echo "benchmarks: exit status $bench_status; results in $out_dir/device_check.json"
python - "$out_dir" "$tests_status" <<'PY'
import json, sys
from pathlib import Path
path = Path(sys.argv[1]) / "device_check.json"
result = json.loads(path.read_text()) if path.exists() else {"error": "device_check.py wrote no results"}
result["tests_exit_status"] = int(sys.argv[2])
path.write_text(json.dumps(result, indent=1))
print(json.dumps({k: v for k, v in result.items() if k != "parts"}))
PY
[ "$tests_status" -eq 0 ] && [ "$bench_status" -eq 0 ]
