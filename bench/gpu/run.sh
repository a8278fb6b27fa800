#!/usr/bin/env bash
# Every GPU section in one run on a GPU box without network: join, check and unpack the offline bundle
# (`make gpu-bundle`, carried as gpu-bundle/part-NN/) into a folder put first on PYTHONPATH, then run each section in
# order under its own time limit, saying what ran, what failed and what was skipped and why.
#
# Run: bench/gpu/run.sh [--smoke] [--pairs N] [--offline-rows N] [--serve-variants V] [--only SECTION,...]
#   --smoke   on the CPU with tiny models (the test suite runs it): checks this script, measures nothing
#   sections: prepare (build and export the bench models), gpu (bench/gpu/scoring.py: placement, parity, speed tables),
#             serve (bench/gpu/serving.py: rerank serve, two replicas on the GPU, mixed load, per --serve-variants:
#             default "default;interactive_window_s=0;graph_variant=fused"; see that script for the settings a variant may change),
#             offline (bench/gpu/offline.py: rerank offline, two actors on the GPU, vs the scorer alone),
#             vl (bench/vl.py --device cuda: Qwen3-VL-Reranker at the 2B shape, built and exported on first run;
#             the recipe in f32 and bf16 against our f16 decoder + vision graphs on image, text and mixed pairs)
# Environment: GPU_BUNDLE (default: gpu-bundle), GPU_SITE (default: ~/.cache/qwen-rerank/gpu-site),
#   GPU_SECTION_LIMIT_S (each section's time limit, default 900; smoke: 300).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUNDLE="${GPU_BUNDLE:-$REPO/gpu-bundle}"
SITE="${GPU_SITE:-$HOME/.cache/qwen-rerank/gpu-site}"
PYTHON="${PYTHON:-python3}"
SMOKE=""
PAIRS=1024
OFFLINE_ROWS=200000
SERVE_VARIANTS=""
ONLY="prepare,gpu,serve,offline,vl"
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE="--smoke"; PAIRS=8 ;;
    --pairs) PAIRS="$2"; shift ;;
    --offline-rows) OFFLINE_ROWS="$2"; shift ;;
    --serve-variants) SERVE_VARIANTS="$2"; shift ;;
    --only) ONLY="$2"; shift ;;
    *) echo "run.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$SERVE_VARIANTS" ] || SERVE_VARIANTS="$([ -n "$SMOKE" ] && echo default || echo 'default;interactive_window_s=0;graph_variant=fused')"
LIMIT="${GPU_SECTION_LIMIT_S:-$([ -n "$SMOKE" ] && echo 300 || echo 900)}"
SUMMARY=()

# Join the pieces (all present, each matching its checksum), unpack them once into $SITE; say why when it cannot.
install_bundle() {
  if [ ! -d "$BUNDLE" ]; then
    echo "bundle: none at $BUNDLE; using the packages this Python has"
    return 0
  fi
  local parts=("$BUNDLE"/part-*) expected have id
  expected="$(cat "${parts[0]}/PIECES" 2>/dev/null || echo '?')"
  have="${#parts[@]}"
  if [ "$have" != "$expected" ]; then
    echo "bundle: $have of $expected pieces in $BUNDLE (carry every gpu-bundle/part-NN folder); not installed"
    return 1
  fi
  for part in "${parts[@]}"; do
    (cd "$part" && sha256sum --quiet -c SHA256SUMS) || { echo "bundle: $part does not match its checksum"; return 1; }
  done
  id="$(cat "$BUNDLE"/part-*/SHA256SUMS | sha256sum | cut -c1-16)"
  if [ "$(cat "$SITE/.bundle-id" 2>/dev/null)" = "$id" ]; then
    echo "bundle: $have pieces already unpacked in $SITE"
    return 0
  fi
  rm -rf "$SITE.partial" && mkdir -p "$SITE.partial"
  cat "$BUNDLE"/part-*/bundle.tar.xz.part* | xz -dc | tar -x -C "$SITE.partial" || { echo "bundle: unpacking failed"; return 1; }
  echo "$id" > "$SITE.partial/.bundle-id"
  rm -rf "$SITE" && mv "$SITE.partial" "$SITE"
  echo "bundle: $have pieces joined, checked and unpacked into $SITE ($(du -sh "$SITE" | cut -f1))"
}

# Run one section under the time limit; record ok / failed / timed out.
section() {
  local name="$1"; shift
  case ",$ONLY," in *",$name,"*) ;; *) SUMMARY+=("$name: skipped (not in --only $ONLY)"); return ;; esac
  echo; echo "== $name: $* (limit ${LIMIT} s) =="
  local started=$SECONDS rc=0
  timeout "$LIMIT" "$@" || rc=$?
  local took=$((SECONDS - started))
  if [ "$rc" = 0 ]; then SUMMARY+=("$name: ok in ${took} s")
  elif [ "$rc" = 124 ]; then SUMMARY+=("$name: timed out after ${LIMIT} s")
  else SUMMARY+=("$name: failed (exit $rc) after ${took} s"); fi
}

install_bundle || SUMMARY+=("bundle: not installed (above); sections ran on this Python's packages")
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
cd "$REPO"
selected=""
for name in prepare gpu serve offline vl; do case ",$ONLY," in *",$name,"*) selected+=" $name" ;; esac; done
if [ -z "$selected" ]; then
  echo "packages: not checked (no section selected by --only $ONLY)"
else "$PYTHON" - <<'EOF'
import importlib
wanted = ["onnxruntime", "torch", "transformers", "pydantic", "yaml", "httpx", "ray.serve", "ray.data", "fastapi"]
failed = {}
for name in wanted:
    try:
        importlib.import_module(name)
    except Exception as exc:  # a missing package, or one the image's versions break: say which and why
        failed[name] = f"{type(exc).__name__}: {exc}"[:160]
import onnxruntime
print("packages: onnxruntime", onnxruntime.__version__, "providers", onnxruntime.get_available_providers())
print("packages that do not import:", "; ".join(f"{k} ({v})" for k, v in failed.items()) if failed else "none")
EOF
fi

section prepare "$PYTHON" bench/gpu/scoring.py --prepare $SMOKE
section gpu "$PYTHON" bench/gpu/scoring.py --pairs "$PAIRS" $SMOKE
section serve "$PYTHON" bench/gpu/serving.py --variants "$SERVE_VARIANTS" $SMOKE
section offline "$PYTHON" bench/gpu/offline.py --rows "$OFFLINE_ROWS" $SMOKE
section vl "$PYTHON" bench/vl.py --device cuda $SMOKE

echo; echo "== summary$([ -n "$SMOKE" ] && echo ' (smoke: CPU, tiny models, nothing measured)') =="
printf '%s\n' "${SUMMARY[@]}"
case "${SUMMARY[*]}" in *"failed (exit"*|*"timed out"*|*"not installed"*) exit 1 ;; esac
