# edgesr device-side runner, pushed to the phone and run as:
#   sh run_benchmark.sh COOLDOWN_S MAX_TEMP_MILLI_C CPU_MASK THERMAL_DIR BINARY [benchmark_model flags...]
# Sleeps COOLDOWN_S, then (if MAX_TEMP_MILLI_C > 0) waits up to 300 s until every thermal zone
# under THERMAL_DIR (/sys/class/thermal on a phone) is at or below it, prints the hottest zone,
# runs BINARY pinned to CPU_MASK with taskset and prints the hottest zone again. Exit codes: the binary's own; 75 if the device stayed too hot.
cooldown=$1
max_temp=$2
mask=$3
thermal=$4
shift 4

hottest_zone() {
  hottest=0
  for zone in "$thermal"/thermal_zone*; do
    [ -r "$zone/temp" ] || continue
    t=$(cat "$zone/temp" 2>/dev/null)
    case "$t" in ''|*[!0-9-]*) continue ;; esac
    [ "$t" -gt "$hottest" ] && hottest=$t
  done
  echo "$hottest"
}

sleep "$cooldown"
if [ "$max_temp" -gt 0 ]; then
  waited=0
  while [ "$(hottest_zone)" -gt "$max_temp" ]; do
    if [ "$waited" -ge 300 ]; then
      echo "edgesr: device still at $(hottest_zone) milli-C after 300 s (gate $max_temp)" >&2
      exit 75
    fi
    sleep 5
    waited=$((waited + 5))
  done
fi
echo "edgesr: hottest thermal zone before run: $(hottest_zone) milli-C"
taskset "$mask" "$@"
rc=$?
echo "edgesr: hottest thermal zone after run: $(hottest_zone) milli-C"
exit $rc
