#!/usr/bin/env bash
# A walk through the order service: start it first (`make example`), then run this script in
# another terminal. It takes an order, pays it with an event on the payments stream, watches
# the order move, and reads the changes the relay published. Needs curl, redis-cli, python3.
set -euo pipefail
BASE="${BASE:-http://127.0.0.1:8000}"
REDIS="${REDIS:-redis-cli -h 127.0.0.1 -p 6379}"

show() { printf '\n$ %s\n' "$*" >&2; "$@"; }
field() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }

order=$(show curl -s -X POST "$BASE/orders" -H 'content-type: application/json' \
    -d '{"item": "widget", "quantity": 2, "amount": 25.0, "address": "1 Harbour Road"}')
echo "$order"
id=$(printf '%s' "$order" | field '["id"]')

# The payment provider's event, as a message on the payments stream: the consumer applies it
# as the event `paid` to the order whose key is `id`, with the message id as idempotency key.
body=$(printf '{"definition": "order", "key": "%s", "event": "paid", "data": {"payment_id": "pay-%s", "amount": 25.0}}' "$id" "$id")
show $REDIS XADD payments '*' id "payment-$id" body "$body"

for _ in 1 2 3 4 5 6; do
    sleep 1
    state=$(curl -s "$BASE/orders/$id" | field '["state"]')
    printf '%s  %s\n' "$(date +%T)" "$state"
    [ "$state" = shipped ] && break
done
show curl -s "$BASE/orders/$id"
echo

# What the relay published: one message per committed change, in revision order.
printf '\n$ %s XRANGE order-changes - + | grep %s\n' "$REDIS" "$id" >&2
$REDIS XRANGE order-changes - + | grep "\"key\": \"$id\""
