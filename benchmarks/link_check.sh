#!/usr/bin/env bash
# Check the link model against a shaped network: the server role in a network namespace behind a
# veth pair whose two ends are rate-limited (tbf: 10 Mbit/s client->server, 20 Mbit/s back), the
# client here; then compare the network time the run measured with what the link model predicts
# from the same record. Needs root; touches only its own namespace and veth pair (never lo).
#   sudo bash benchmarks/link_check.sh [STEPS]   -> prints the ratio (docs/transport.md)
# netem (delay) is used when the kernel has it; without it only the bandwidth part is checked.
set -euo pipefail
STEPS=${1:-10}; NS=adcb_s
cleanup() { ip netns del $NS 2>/dev/null || true; ip link del adcb_c 2>/dev/null || true; }
cleanup
OUT=$(mktemp -d)
trap 'cleanup; rm -rf "$OUT"' EXIT
ip netns add $NS
ip link add adcb_c type veth peer name adcb_sv
ip link set adcb_sv netns $NS
ip addr add 10.77.0.1/24 dev adcb_c && ip link set adcb_c up
ip netns exec $NS ip addr add 10.77.0.2/24 dev adcb_sv
ip netns exec $NS ip link set adcb_sv up && ip netns exec $NS ip link set lo up
RTT_MS=0.1
if tc qdisc add dev adcb_c root netem delay 20ms rate 10mbit 2>/dev/null; then
  ip netns exec $NS tc qdisc add dev adcb_sv root netem delay 20ms rate 20mbit; RTT_MS=40
else
  echo "link_check: netem is not in this kernel; shaping bandwidth only (tbf), RTT ~0" >&2
  tc qdisc add dev adcb_c root tbf rate 10mbit burst 64kbit latency 1s
  ip netns exec $NS tc qdisc add dev adcb_sv root tbf rate 20mbit burst 64kbit latency 1s
fi
export OMP_NUM_THREADS=1
GLOO_SOCKET_IFNAME=adcb_sv ip netns exec $NS adcbench serve --host 10.77.0.2 --port 29555 --wait 300 --timeout 120 &
SERVER=$!
GLOO_SOCKET_IFNAME=adcb_c adcbench run --role client --connect 10.77.0.2:29555 --timeout 120 --task digits \
  --method none --max-steps "$STEPS" --eval-every 0 --threads 1 --out "$OUT" --quiet
wait $SERVER
python - "$OUT/digits.jsonl" "$RTT_MS" <<'PY'
import json, sys
from adcbench.transport.link import parse_link, timeline
rec = json.loads(open(sys.argv[1]).read().splitlines()[-1])
link = parse_link(f"up=10Mbit,down=20Mbit,rtt={sys.argv[2]}ms")
row, t = timeline(rec, link)[-1], rec["history"][-1]["traffic"]
measured = t["wall_s"]
print(f"steps {rec['steps']}  bytes up {t['bytes']['fwd'] + t['bytes']['eval_fwd']:,}  down {t['bytes']['bwd'] + t['bytes']['eval_bwd']:,}")
print(f"network time: measured {t['network_s']:.2f} s, modelled {row['link_s']:.2f} s, ratio {t['network_s'] / row['link_s']:.3f}")
print(f"wall time: measured {measured:.2f} s, virtual clock {row['time_s']:.2f} s, ratio {measured / row['time_s']:.3f}")
PY
