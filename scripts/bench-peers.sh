#!/usr/bin/env bash
# The tumble count side by side, in one run: Flink 2.3 (parallelism 1, an embedded MiniCluster,
# jars from the apache-flink-libraries wheel on PyPI, the machine's Java 17), DataFusion's batch
# GROUP BY over the same rows (the ceiling) and Weir, then the ratios, written to BENCHMARKS.md.
#
#   scripts/bench-peers.sh [ROWS] [MORE WORKLOADS…]     (ROWS default 10,000,000)
#   scripts/bench-peers.sh 10000000 q0 q1 q2 q5 sensors memory latency latency_window
#   scripts/bench-peers.sh 10000000 q11 tumble2s tumble2s_retained hop cumulate session_memory
#                               (window kinds only: the `windows` bench with Flink's q11 beside
#                                Weir's; the tumble count runs when other workloads are named)
#   scripts/bench-peers.sh 10000000 q7 self_interval q3 q4 q8 q9 updating   (joins: the `joins` bench, Flink's q7 beside)
#   scripts/bench-peers.sh 10000000 q3_csv q4_csv q8_csv q9_csv   (Nexmark joins, Weir and Flink over
#                               the same CSV rows written from Weir's generator; FLINK_HEAP=8g for
#                               Flink's heap, 4g by default)
#
# Flink's CPU time is measured with /usr/bin/time over a run of ROWS rows minus a run of 1,000
# rows, so its ~8 s of JVM start-up and job submission is not counted against it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROWS="${1:-10000000}"
shift || true
CACHE="${WEIR_BENCH_CACHE:-$HOME/.cache/weir-bench}"
FLINK="$CACHE/flink-2.3.0"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}"

if [ ! -d "$FLINK/pyflink/lib" ]; then
  echo "fetching Flink 2.3.0 (apache-flink-libraries wheel, ~330 MB) into $CACHE"
  python3 -m pip download --quiet --no-deps -d "$CACHE/dl" apache-flink-libraries==2.3.0
  mkdir -p "$FLINK"
  (cd "$FLINK" && unzip -q -o "$CACHE"/dl/apache_flink_libraries-2.3.0-*.whl 'pyflink/*')
fi
javac -cp "$FLINK/pyflink/lib/*" -d "$FLINK" "$ROOT/benches/peers/FlinkSqlBench.java"

# Prints "cpu_seconds wall_seconds max_rss_kb" of one Flink run of script $2 (default: the
# tumble count) over $1 rows.
flink_run() {
  local out
  out="$(/usr/bin/time -f "TIME %U %S %e %M" java -Xmx"${FLINK_HEAP:-4g}" -cp "$FLINK/pyflink/lib/*:$FLINK" \
    FlinkSqlBench "$ROOT/benches/peers/${2:-flink_tumble_count.sql}" "$1" 1 2>&1)"
  echo "$out" | grep -E "^RESULT" >&2 || { echo "$out" >&2; exit 1; }
  echo "$out" | awk '/^TIME/ { printf "%.2f %.2f %d\n", $2 + $3, $4, $5 }'
}

# `q11` among the workloads: Flink's session windows over the same rows, beside Weir's
# `windows` bench (which writes its own BENCHMARKS.md section).
windows=()
joins=()
same_rows=()
streaming=()
for w in "$@"; do
  case "$w" in
    q11 | tumble2s | tumble2s_retained | hop | cumulate | session_memory) windows+=("$w") ;;
    q7 | self_interval | q3 | q4 | q8 | q9 | updating) joins+=("$w") ;;
    q3_csv | q4_csv | q8_csv | q9_csv) same_rows+=("$w") ;;
    *) streaming+=("$w") ;;
  esac
done
cd "$ROOT"
if [ "${#windows[@]}" -gt 0 ]; then
  flink_q11=""
  if printf '%s\n' "${windows[@]}" | grep -qx q11; then
    echo "Flink 2.3, parallelism 1: q11 start-up run (1,000 rows)"
    read -r q_startup_cpu q_startup_wall _ < <(flink_run 1000 flink_q11_session.sql)
    echo "Flink 2.3, parallelism 1: q11, $ROWS rows"
    read -r q_cpu q_wall q_rss_kb < <(flink_run "$ROWS" flink_q11_session.sql)
    flink_q11="$CACHE/flink-q11-$ROWS.txt"
    echo "rows=$ROWS cpu=$q_cpu wall=$q_wall startup_cpu=$q_startup_cpu startup_wall=$q_startup_wall maxrss_mb=$((q_rss_kb / 1024))" \
      | tee "$flink_q11"
  fi
  cargo bench --bench windows -- "${windows[@]}" --events "$ROWS" ${flink_q11:+--flink-q11 "$flink_q11"}
fi
if [ "${#joins[@]}" -gt 0 ]; then
  flink_q7=""
  if printf '%s\n' "${joins[@]}" | grep -qx q7; then
    echo "Flink 2.3, parallelism 1: q7 start-up run (1,000 rows)"
    read -r j_startup_cpu j_startup_wall _ < <(flink_run 1000 flink_q7_highest_bid.sql)
    echo "Flink 2.3, parallelism 1: q7, $ROWS rows"
    read -r j_cpu j_wall j_rss_kb < <(flink_run "$ROWS" flink_q7_highest_bid.sql)
    flink_q7="$CACHE/flink-q7-$ROWS.txt"
    echo "rows=$ROWS cpu=$j_cpu wall=$j_wall startup_cpu=$j_startup_cpu startup_wall=$j_startup_wall maxrss_mb=$((j_rss_kb / 1024))" \
      | tee "$flink_q7"
  fi
  cargo bench --bench joins -- "${joins[@]}" --events "$ROWS" ${flink_q7:+--flink-q7 "$flink_q7"}
fi
if [ "${#same_rows[@]}" -gt 0 ]; then
  # The same rows for both: CSV files written once per size from Weir's Nexmark generator.
  cargo build --release --bench joins
  for n in 1000 "$ROWS"; do
    if [ ! -s "$CACHE/nexmark-csv-$n/bid.csv" ]; then
      cargo bench --bench joins -- --dump-nexmark "$CACHE/nexmark-csv-$n" --events "$n"
    fi
  done
  for w in "${same_rows[@]}"; do
    q="${w%_csv}"
    echo "Flink 2.3, parallelism 1: $q start-up run (1,000 events)"
    read -r s_cpu s_wall _ < <(WEIR_NEXMARK_CSV="$CACHE/nexmark-csv-1000" flink_run 1000 "flink_nexmark_csv.sql,flink_$q.sql")
    echo "Flink 2.3, parallelism 1: $q, $ROWS events"
    read -r f_cpu f_wall f_rss_kb < <(WEIR_NEXMARK_CSV="$CACHE/nexmark-csv-$ROWS" flink_run "$ROWS" "flink_nexmark_csv.sql,flink_$q.sql")
    echo "rows=$ROWS cpu=$f_cpu wall=$f_wall startup_cpu=$s_cpu startup_wall=$s_wall maxrss_mb=$((f_rss_kb / 1024))" \
      | tee "$CACHE/flink-$q-$ROWS.txt"
  done
  WEIR_NEXMARK_CSV="$CACHE/nexmark-csv-$ROWS" cargo bench --bench joins -- "${same_rows[@]}" --events "$ROWS" --flink-dir "$CACHE"
fi
# The tumble count (Flink, the ceiling, Weir), unless only window or join workloads were asked for.
if [ "${#streaming[@]}" -gt 0 ] || [ "$(( ${#windows[@]} + ${#joins[@]} + ${#same_rows[@]} ))" -eq 0 ]; then
  echo "Flink 2.3, parallelism 1: start-up run (1,000 rows)"
  read -r startup_cpu startup_wall _ < <(flink_run 1000)
  echo "Flink 2.3, parallelism 1: $ROWS rows"
  read -r cpu wall rss_kb < <(flink_run "$ROWS")
  result="$CACHE/flink-tumble-$ROWS.txt"
  echo "rows=$ROWS cpu=$cpu wall=$wall startup_cpu=$startup_cpu startup_wall=$startup_wall maxrss_mb=$((rss_kb / 1024))" \
    | tee "$result"
  cargo bench --bench streaming -- generator ceiling tumble "${streaming[@]}" --events "$ROWS" --flink "$result"
fi
