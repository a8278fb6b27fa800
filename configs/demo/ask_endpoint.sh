#!/usr/bin/env bash
# The demo's online step: start `rerank serve ARGS...` on local Ray, wait until it answers, POST the JSON body read
# from stdin to ROUTE, print the answer, stop the endpoint.  Usage: ask_endpoint.sh BIN PORT LOG ROUTE -- SERVE ARGS...
set -euo pipefail
bin="$1" port="$2" log="$3" route="$4"; shift 5
body="$(cat)"
url="http://127.0.0.1:$port"
"$bin/rerank" serve --port "$port" "$@" > "$log" 2>&1 & pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 180); do
  curl -sf "$url/health" >/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 1
done
echo "endpoint up at $url; POST $route:"
curl -sf -X POST "$url$route" -H 'content-type: application/json' --data-binary @- <<< "$body"
echo; echo "stopping the endpoint"
