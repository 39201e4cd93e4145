#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The test runner behind `make test`: unit binaries, fuzz smoke runs and
# integration tests. Each test exits 0 (pass), 77 (skip) or anything else
# (fail). Ends with one "N passed, N failed" line; exits 1 on any failure.
#
#   tests/run.sh [filter]     run only tests whose name contains filter
set -u
cd "$(dirname "$0")/.."
B=build
FILTER=${1:-}
FUZZ_SMOKE_SECONDS=${FUZZ_SMOKE_SECONDS:-5}
LOGDIR=$B/test-logs
mkdir -p "$LOGDIR"
pass=0 fail=0 skip=0 failed=()

run() {	# name, command...
	local name=$1; shift
	[[ -n $FILTER && $name != *"$FILTER"* ]] && return
	local log=$LOGDIR/${name//\//_}.log t0=$SECONDS rc
	"$@" >"$log" 2>&1 </dev/null
	rc=$?
	local dt=$((SECONDS - t0))
	case $rc in
	0)  pass=$((pass + 1)); printf '  PASS  %-48s %3ds\n' "$name" "$dt" ;;
	77) skip=$((skip + 1)); printf '  SKIP  %-48s %s\n' "$name" "$(tail -n1 "$log")" ;;
	*)  fail=$((fail + 1)); failed+=("$name")
	    printf '  FAIL  %-48s %3ds (exit %d, log %s)\n' "$name" "$dt" "$rc" "$log"
	    tail -n 20 "$log" | sed 's/^/        | /' ;;
	esac
}

echo "unit tests"
for t in $(find $B/tests/unit -type f -executable -name 'test_*' | sort); do
	run "unit/${t#$B/tests/unit/}" "$t"
done

echo "fuzz smoke (${FUZZ_SMOKE_SECONDS}s each)"
for f in $(find $B/fuzz -maxdepth 1 -type f -executable -name 'fuzz_*' | sort); do
	n=$(basename "$f")
	work=$B/fuzz/smoke/$n
	rm -rf "$work" && mkdir -p "$work"
	run "fuzz/$n" "$f" -max_total_time="$FUZZ_SMOKE_SECONDS" -timeout=10 \
		-rss_limit_mb=2048 "$work" "tests/fuzz/corpus/$n"
done

echo "integration tests"
for t in $(find tests/integration -maxdepth 1 -name 'test_*' | sort); do
	case $t in
	*.py) run "integration/$(basename "$t")" /usr/bin/python3 "$t" ;;
	*.sh) run "integration/$(basename "$t")" bash "$t" ;;
	esac
done

if ((fail)); then
	echo "failed: ${failed[*]}"
fi
echo "$pass passed, $fail failed, $skip skipped"
((fail == 0))
