#!/usr/bin/env bash
# The txgate demo: builds the gateway and the demo bank, starts two banks and the gateway with
# examples/transfer.toml, and sends requests through it with curl. It then keeps running so you
# can try your own requests; Ctrl-C stops everything. DEMO_EXIT=1 stops after the walkthrough.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$1"; eval "$1"; echo; }
# wait_balance N: waits (10 s at most) until dave, at bank_b, holds N: a message's delivery.
wait_balance() {
  for _ in $(seq 200); do
    [ "$(curl -s http://127.0.0.1:7002/accounts/dave | python3 -c 'import json, sys; print(json.load(sys.stdin)["balance"])')" = "$1" ] && return
    sleep 0.05
  done
}

# examples/jwt/mint.sh signs the demo's tokens with the openssl CLI.
if ! command -v openssl >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl
fi

say "Building the gateway, the demo bank and the plugins (release) ..."
cargo build --release -q -p txgate -p txgate-bank
plugins/build >/dev/null

demo_dir=target/demo
rm -rf "$demo_dir" examples/txgate-data
mkdir -p "$demo_dir"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

target/release/txgate-bank --listen 127.0.0.1:7001 --name bank_a \
  --accounts alice=1000,bob=1000 >"$demo_dir/bank_a.log" 2>&1 &
pids+=($!)
target/release/txgate-bank --listen 127.0.0.1:7002 --name bank_b \
  --accounts carol=1000,dave=1000 >"$demo_dir/bank_b.log" 2>&1 &
pids+=($!)
target/release/txgate serve --config examples/transfer.toml 2>"$demo_dir/txgate.log" &
pids+=($!)

for _ in $(seq 200); do
  curl -sf http://127.0.0.1:9080/readyz >/dev/null 2>&1 && break
  sleep 0.05
done
curl -sf http://127.0.0.1:9080/readyz >/dev/null || { cat "$demo_dir/txgate.log"; exit 1; }

say "A transfer as a saga: debit alice at bank_a, credit carol at bank_b:"
run "curl -s -X POST http://127.0.0.1:8080/transfers -H 'X-Request-ID: demo-transfer-1' -H 'Content-Type: application/json' -d '{\"from\":\"alice\",\"to\":\"carol\",\"amount\":100}'"

say "The same X-Request-ID again: the idempotency plugin replays the stored answer; nothing runs twice:"
run "curl -s -i -X POST http://127.0.0.1:8080/transfers -H 'X-Request-ID: demo-transfer-1' -H 'Content-Type: application/json' -d '{\"from\":\"alice\",\"to\":\"carol\",\"amount\":100}'"

say "The same X-Request-ID with a different body is refused:"
run "curl -s -X POST http://127.0.0.1:8080/transfers -H 'X-Request-ID: demo-transfer-1' -H 'Content-Type: application/json' -d '{\"from\":\"alice\",\"to\":\"carol\",\"amount\":999}'"

say "A transfer to an account bank_b does not have: the credit is rejected and the debit compensated:"
run "curl -s -X POST http://127.0.0.1:8080/transfers -H 'X-Request-ID: demo-transfer-2' -H 'Content-Type: application/json' -d '{\"from\":\"alice\",\"to\":\"nobody\",\"amount\":50}'"

say "The same transfer as TCC: reserve at both banks, then confirm both:"
run "curl -s -X POST http://127.0.0.1:8080/tcc/transfers -H 'X-Request-ID: demo-tcc-1' -H 'Content-Type: application/json' -d '{\"from\":\"bob\",\"to\":\"dave\",\"amount\":30}'"

say "The books through a plain route (the served_by plugin adds x-served-by; X-Request-ID echoed):"
run "curl -s -i http://127.0.0.1:8080/bank-a/accounts -H 'X-Request-ID: demo-read-1'"
run "curl -s http://127.0.0.1:8080/bank-b/accounts"

say "Rate limiting per client (burst 5, then 2 per second): the 6th quick read is refused with 429:"
for n in 1 2 3 4 5 6; do
  printf 'read %s: ' "$n"
  curl -s -o /dev/null -w '%{http_code}\n' http://127.0.0.1:8080/bank-a/accounts -H 'X-Client-ID: demo-reader'
done
run "curl -s -i http://127.0.0.1:8080/bank-a/accounts -H 'X-Client-ID: demo-reader' | grep -iE '^(HTTP|retry-after|ratelimit)'"

say "served_by's headers depend on its config alone, and it says so (decisions.reuse and"
say "reuse-response): the gateway called it once each way and added its headers itself since:"
run "curl -s -H 'Authorization: Bearer demo-auditor-0123456789' http://127.0.0.1:9080/metrics | grep -E '^txgate_plugin_(calls_total|decisions_reused_total)\\{plugin=\"served_by\",hook=\"on-(request|response)\"'"

say "The book-reading routes are GET-only: a write to a bank through them is refused (405):"
run "curl -s -X POST http://127.0.0.1:8080/bank-b/credit -H 'Idempotency-Key: forged' -d '{\"account\":\"carol\",\"amount\":1000}'"

say "A path that climbs out of its route is refused before routing (400), in any encoding:"
run "curl -s --path-as-is http://127.0.0.1:8080/bank-a/../admin"
run "curl -s -o /dev/null -w '..%%2f: %{http_code}\\n' --path-as-is 'http://127.0.0.1:8080/bank-a/..%2fadmin'"
run "curl -s -o /dev/null -w '..;/: %{http_code}\\n' --path-as-is 'http://127.0.0.1:8080/bank-a/..;/admin'"

say "CONNECT and TRACE are never proxied (405):"
run "curl -s -o /dev/null -w '%{http_code}\\n' -X TRACE http://127.0.0.1:8080/bank-a/accounts"

say "A saga's calls carry Idempotency-Keys derived from a secret of the saga's: a client that knows"
say "the saga id still cannot send one of them first (bank_b's log of the last credit):"
run "curl -s http://127.0.0.1:7002/_requests | grep -o '\"idempotency-key\":\"txgate-[0-9a-f]*\"' | tail -1"

say "Identity at the edge: jwt_auth verifies a signed token (RS256, the demo key in examples/jwt/)"
say "and passes its subject to the saga as X-User-ID; the transfer is exactly once per user:"
token=$(examples/jwt/mint.sh alice)
run "curl -s -X POST http://127.0.0.1:8080/me/transfers -H \"Authorization: Bearer \$token\" -H 'X-Request-ID: demo-me-1' -H 'Content-Type: application/json' -d '{\"from\":\"alice\",\"to\":\"carol\",\"amount\":10}'"

say "Without a token, 401; a forged X-User-ID names nobody:"
run "curl -s -i -X POST http://127.0.0.1:8080/me/transfers -H 'X-User-ID: alice' -H 'X-Request-ID: demo-me-2' -d '{\"from\":\"alice\",\"to\":\"carol\",\"amount\":10}' | grep -iE '^(HTTP|www-authenticate)'"

say "A token whose payload was changed (bob instead of alice) fails its signature check: 401 invalid_token:"
forged="$(cut -d. -f1 <<<"$token").$(printf '{"iss":"https://id.example.com/","aud":"txgate-demo","sub":"bob","exp":4102444800,"scope":"transfers:write"}' | openssl base64 -A | tr '+/' '-_' | tr -d '=').$(cut -d. -f3 <<<"$token")"
run "curl -s -i -X POST http://127.0.0.1:8080/me/transfers -H \"Authorization: Bearer \$forged\" -H 'X-Request-ID: demo-me-3' -d '{}' | grep -iE '^(HTTP|www-authenticate)'"

say "The same token again (a new transfer): the gateway reuses jwt_auth's decision for it, without"
say "calling the plugin, until the token expires: its calls are the three requests above, not this one:"
run "curl -s -X POST http://127.0.0.1:8080/me/transfers -H \"Authorization: Bearer \$token\" -H 'X-Request-ID: demo-me-4' -H 'Content-Type: application/json' -d '{\"from\":\"alice\",\"to\":\"carol\",\"amount\":5}'"
run "curl -s -H 'Authorization: Bearer demo-auditor-0123456789' http://127.0.0.1:9080/metrics | grep -E '^txgate_plugin_(calls_total\\{plugin=\"jwt_auth\",hook=\"on-request\"|decisions_reused_total\\{plugin=\"jwt_auth\")'"

say "Data masking: what a support tool sees of a request with a card number (Luhn-checked, last 4 kept):"
run "curl -s -X POST http://127.0.0.1:8080/support/echo -H 'Content-Type: application/json' -d '{\"note\":\"card 4111111111111111 declined\"}' | python3 -c 'import json, sys; print(json.load(sys.stdin)[\"body\"])'"

say "The audit stream: one line per request, tagged by the gateway (examples/txgate-data/audit.log):"
run "tail -n 2 examples/txgate-data/audit.log"

# The demo's operators (examples/transfer.toml): ops-alice operates, auditor only reads.
OPS="Authorization: Bearer demo-ops-alice-0123456789"
AUDITOR="Authorization: Bearer demo-auditor-0123456789"

say "A transactional message: the orders service (beside bank_a) prepares \"order paid\", commits its own"
say "transaction (its barrier row), then submits; the message is delivered to bank_b's ledger (dave +25)"
say "and to a notification, both at once (parallel = true):"
run "curl -s -X POST http://127.0.0.1:8080/msg/orders -H 'X-Request-ID: order-42' -H 'Content-Type: application/json' -d '{\"account\":\"dave\",\"amount\":25,\"event\":\"order paid\"}'"
run "curl -s -X POST http://127.0.0.1:7001/orders/order-42/commit"
run "curl -s -X POST http://127.0.0.1:8080/msg/orders/order-42/submit -H 'X-Request-ID: order-42'"
wait_balance 1055
run "curl -s http://127.0.0.1:7002/accounts/dave"

say "The service commits order-44, then crashes before its submit: after 2 s the back-check finds"
say "the order's barrier row (200) and the message is delivered anyway (dave +5):"
run "curl -s -X POST http://127.0.0.1:8080/msg/orders -H 'X-Request-ID: order-44' -d '{\"account\":\"dave\",\"amount\":5}'"
run "curl -s -X POST http://127.0.0.1:7001/orders/order-44/commit"
wait_balance 1060
run "curl -s http://127.0.0.1:7002/accounts/dave"

say "Order-43 rolls back and its service crashes before the abort: the back-check finds no barrier"
say "row, writes 'rolled back' (409), and the message is aborted, never delivered; a late submit gets 409:"
run "curl -s -X POST http://127.0.0.1:8080/msg/orders -H 'X-Request-ID: order-43' -d '{\"account\":\"dave\",\"amount\":99}'"
for _ in $(seq 200); do
  [ "$(curl -s -H "$AUDITOR" 'http://127.0.0.1:9080/admin/sagas?q=order-43' | python3 -c 'import json, sys; print(json.load(sys.stdin)["sagas"][0]["msg_state"])')" = aborted ] && break
  sleep 0.05
done
run "curl -s -o /dev/null -w '%{http_code}\\n' -X POST http://127.0.0.1:8080/msg/orders/order-43/submit -H 'X-Request-ID: order-43'"
run "curl -s -X POST http://127.0.0.1:7001/orders/order-43/commit"


say "What an operator sees: the newest sagas (admin API, the auditor's token):"
run "curl -s -H \"\$AUDITOR\" 'http://127.0.0.1:9080/admin/sagas?limit=1'"

say "Search by X-Request-ID (or saga id, or client):"
run "curl -s -H \"\$AUDITOR\" 'http://127.0.0.1:9080/admin/sagas?q=demo-me-1' | python3 -c 'import json, sys; print([(s[\"request_id\"], s[\"client\"], s[\"status\"]) for s in json.load(sys.stdin)[\"sagas\"]])'"

say "A transfer whose credit bank hangs (each credit times out) waits, retrying; an operator aborts it:"
run "curl -s -X POST http://127.0.0.1:7002/_faults -H 'Content-Type: application/json' -d '{\"kind\":\"latency\",\"latency_ms\":1500,\"path_prefix\":\"/credit\"}' >/dev/null"
curl -s -X POST http://127.0.0.1:8080/transfers -H 'X-Request-ID: demo-abort-1' -H 'Content-Type: application/json' -d '{"from":"bob","to":"carol","amount":7}' >"$demo_dir/abort-answer.json" &
for _ in $(seq 100); do
  saga=$(curl -s -H "$AUDITOR" 'http://127.0.0.1:9080/admin/sagas?q=demo-abort-1' | python3 -c 'import json, sys; s = json.load(sys.stdin)["sagas"]; print(s[0]["saga_id"] if s and s[0]["stage"] == "Forward(1)" else "")')
  [ -n "$saga" ] && break
  sleep 0.05
done
run "curl -s -o /dev/null -w 'the auditor may not: %{http_code}\\n' -X POST -H \"\$AUDITOR\" http://127.0.0.1:9080/admin/sagas/$saga/abort -d '{\"reason\":\"test\"}'"
run "curl -s -X POST -H \"\$OPS\" http://127.0.0.1:9080/admin/sagas/$saga/abort -d '{\"reason\":\"customer cancelled by phone\"}' | python3 -c 'import json, sys; v = json.load(sys.stdin); print(v[\"status\"], v[\"actions\"])'"
curl -s -X DELETE http://127.0.0.1:7002/_faults >/dev/null
wait %% 2>/dev/null || true
say "The client's answer (409: aborted, every applied step compensated):"
run "cat $demo_dir/abort-answer.json; echo"

say "The operator console at /ui/ (a browser's way in; here with curl): sign in, then the counts per status:"
curl -s -o /dev/null -c "$demo_dir/console.cookies" -X POST http://127.0.0.1:9080/ui/login \
  -H 'Origin: http://127.0.0.1:9080' --data-urlencode 'token=demo-auditor-0123456789'
run "curl -s -b $demo_dir/console.cookies http://127.0.0.1:9080/ui/ | grep -o '<ul class=\"counts\".*</ul>' | sed -e 's/<[^>]*>/ /g' -e 's/  */ /g'"

say "Reconcile the books: every step of every saga finished in the last hour, against what its bank"
say "holds (each step's status call). Exit 0: they agree:"
run "target/release/txgate reconcile --config examples/transfer.toml --since 1h"

say "A bank that acknowledges a debit and loses it: the saga completes, and reconcile finds the"
say "missing effect (one JSON line per finding; exit 1):"
run "curl -s -X POST http://127.0.0.1:7001/_faults -H 'Content-Type: application/json' -d '{\"kind\":\"ack\",\"path_prefix\":\"/debit\",\"count\":1}' >/dev/null"
run "curl -s -o /dev/null -w '%{http_code}\\n' -X POST http://127.0.0.1:8080/transfers -H 'X-Request-ID: demo-lost-1' -H 'Content-Type: application/json' -d '{\"from\":\"alice\",\"to\":\"carol\",\"amount\":5}'"
run "target/release/txgate reconcile --config examples/transfer.toml --since 1h --format jsonl 2>/dev/null || echo \"exit \$?\""

say "The store as the running gateway reports it: SQLite, WAL, synchronous FULL, space per namespace:"
run "curl -s -H \"\$AUDITOR\" http://127.0.0.1:9080/admin/store"

say "An unknown path is an RFC 9457 problem:"
run "curl -s http://127.0.0.1:8080/nowhere"

say "Gateway metrics (admin listener):"
curl -s -H "$AUDITOR" http://127.0.0.1:9080/metrics | grep -E '^txgate_(requests_total|sagas_total)' || true

say "Logs are in $demo_dir/."
if [ "${DEMO_EXIT:-0}" = 1 ]; then exit 0; fi
say "The gateway is up on http://127.0.0.1:8080 (admin http://127.0.0.1:9080). Try:"
echo "  curl -s -X POST http://127.0.0.1:8080/transfers -H 'X-Request-ID: my-1' -d '{\"from\":\"bob\",\"to\":\"carol\",\"amount\":5}'"
echo "  curl -s -H '$AUDITOR' http://127.0.0.1:9080/admin/sagas?status=completed"
echo "  target/release/txgate reconcile --config examples/transfer.toml --since 1h"
echo "  or open http://127.0.0.1:9080/ui/ in a browser, signed in as ops-alice: demo-ops-alice-0123456789"
echo "Press Ctrl-C to stop."
wait
