#!/usr/bin/env bash
# Model-check shmqueue with loom, then show that each deliberate mutation is
# rejected. Usage: loom-tests/run.sh [--deep]
#   default: LOOM_MAX_PREEMPTIONS=4 (CI; ~35 s of checking on 2 cores)
#   --deep:  LOOM_MAX_PREEMPTIONS=5 (release checks; ~5 min)
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom"
export CARGO_TARGET_DIR=target/loom
export LOOM_MAX_PREEMPTIONS=4
if [ "${1:-}" = "--deep" ]; then
    export LOOM_MAX_PREEMPTIONS=5
fi

echo "== loom: the real code (LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS)"
SHMQ_MUTATION= cargo test --release -p loom-tests

# Each mutation is a known bug compiled in through build.rs; loom must fail.
failed=0
for m in relaxed_publish no_waiter_fence wake_before_publish; do
    echo "== loom must reject mutation: $m"
    if SHMQ_MUTATION=$m cargo test --release -p loom-tests >"target/loom-$m.log" 2>&1; then
        echo "MUTATION SURVIVED: $m (loom found nothing; see target/loom-$m.log)" >&2
        failed=1
    else
        grep -m1 -E "panicked at|deadlock|Causality|data race" "target/loom-$m.log" || true
        echo "rejected: $m"
    fi
done
exit $failed
