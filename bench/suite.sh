#!/usr/bin/env bash
# The benchmark matrix behind the README's "Latest results": every load shape,
# both APIs, 1/2/4 workers, cluster and embedded. Writes bench/results/suite-*.json
# and prints one Markdown table (`clawhive-bench report`).
#
# Usage: bench/suite.sh [runs-of-the-key-rows (default 3)]
# Build first: cargo build --release -p clawhive-bench -p clawhive-gateway -p clawhive-agent-worker -p clawhive
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
OUT=bench/results
B=(target/release/clawhive-bench --prebuilt --out-dir "$OUT")
rm -f "$OUT"/suite-*.json

run() { # name, args… (the environment, e.g. GOMAXPROCS, passes through to the servers)
  local name="$1"; shift
  "${B[@]}" --name "suite-$name" "$@" >/dev/null 2>"$OUT/.suite-$name.log" || { cat "$OUT/.suite-$name.log"; exit 1; }
  rm -f "$OUT/.suite-$name.log"
}

for i in $(seq 1 "$RUNS"); do
  run "cluster-grpc-seq-w1-$i" --turns 1000 sequential
  run "cluster-grpc-c32-w1-$i" --duration 10 concurrency 32
  run "embedded-grpc-seq-$i" --mode embedded --turns 1000 sequential
done
run cluster-http-seq-w1 --api http --turns 1000 sequential
run cluster-grpc-c8-w1 --duration 10 concurrency 8
run cluster-grpc-c32-w2 --workers 2 --duration 10 concurrency 32
run cluster-grpc-c32-w4 --workers 4 --duration 10 concurrency 32
run cluster-grpc-c256-w2 --workers 2 --worker-concurrency 128 --duration 10 concurrency 256
run cluster-http-c32-w1 --api http --duration 10 concurrency 32
run cluster-grpc-open500-w1 --duration 10 open-loop --rate 500
run embedded-grpc-c32 --mode embedded --duration 10 concurrency 32
run embedded-http-seq --mode embedded --api http --turns 1000 sequential
# One runtime thread per process (tokio and nats-server's Go runtime): where
# five processes and the load generator share two cores.
T=(--service-env TOKIO_WORKER_THREADS=1)
for i in $(seq 1 "$RUNS"); do
  GOMAXPROCS=1 run "t1-cluster-grpc-seq-w1-$i" "${T[@]}" --turns 1000 sequential
  GOMAXPROCS=1 run "t1-cluster-grpc-c32-w1-$i" "${T[@]}" --duration 10 concurrency 32
  run "t1-embedded-grpc-seq-$i" "${T[@]}" --mode embedded --turns 1000 sequential
done

"${B[@]}" report "$OUT"/suite-*.json
