#!/usr/bin/env bash
# Create every Homeroom topic with its partitions, retention and replication, then enforce
# the retention on topics that already exist. Idempotent: run it on every deployment.
#
# Runs in the official apache/kafka image (docker-compose.yml service `kafka-topics`), or
# anywhere Kafka's bin/ tools are installed:
#   KAFKA_BOOTSTRAP_SERVERS=broker-1:9093 TOPIC_REPLICATION_FACTOR=3 \
#   KAFKA_CLIENT_CONFIG=/etc/kafka/client.properties ./create-topics.sh
#
# Replication: 1 on the single-broker compose stack; 3 on a three-broker production
# cluster, with min.insync.replicas=2 so a write is acknowledged by two brokers and one
# broker can be lost (or upgraded) without stopping producers (docs/operations.md).
# Retention: retention.ms=-1 means never deleted by time; the audit trail (consent,
# keys, transfer, disclosure topics) is kept forever. The list below is generated from
# homeroom/bus/topics.py and checked by tests/ops/test_topics.py.
set -euo pipefail

BOOTSTRAP="${KAFKA_BOOTSTRAP_SERVERS:-kafka:9092}"
RF="${TOPIC_REPLICATION_FACTOR:-1}"
KAFKA_BIN="${KAFKA_BIN:-/opt/kafka/bin}"
if [ "$RF" -ge 3 ]; then MIN_ISR=2; else MIN_ISR=1; fi

CLIENT_ARGS=()
if [ -n "${KAFKA_CLIENT_CONFIG:-}" ]; then  # SASL_SSL / mTLS client settings (docs/operations.md)
  CLIENT_ARGS=(--command-config "$KAFKA_CLIENT_CONFIG")
fi

# Wait for the broker (the compose job also waits for its health check).
for attempt in $(seq 1 60); do
  if "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" "${CLIENT_ARGS[@]}" --list > /dev/null 2>&1; then
    break
  fi
  if [ "$attempt" -eq 60 ]; then echo "kafka at $BOOTSTRAP did not answer" >&2; exit 1; fi
  sleep 2
done

create_topic() {
  local name="$1" partitions="$2" retention_ms="$3"
  "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" "${CLIENT_ARGS[@]}" \
    --create --if-not-exists --topic "$name" \
    --partitions "$partitions" --replication-factor "$RF" \
    --config "retention.ms=$retention_ms" \
    --config "retention.bytes=-1" \
    --config "cleanup.policy=delete" \
    --config "min.insync.replicas=$MIN_ISR"
  # An existing topic keeps its old settings otherwise: make retention what topics.py says.
  "$KAFKA_BIN/kafka-configs.sh" --bootstrap-server "$BOOTSTRAP" "${CLIENT_ARGS[@]}" \
    --alter --entity-type topics --entity-name "$name" \
    --add-config "retention.ms=$retention_ms,retention.bytes=-1,min.insync.replicas=$MIN_ISR"
  # Partitions can only grow (keys move partitions when they do: see docs/operations.md).
  local current
  current=$("$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" "${CLIENT_ARGS[@]}" \
    --describe --topic "$name" | grep -c "Partition: " || true)
  if [ "$current" -lt "$partitions" ]; then
    echo "$name has $current partitions, topics.py wants $partitions: run kafka-topics.sh --alter --partitions $partitions deliberately" >&2
  fi
  echo "topic $name: partitions=$partitions retention.ms=$retention_ms replication=$RF"
}

# BEGIN TOPICS (generated from homeroom/bus/topics.py by tests/ops/topics_script.py; do not edit)
create_topic enrollment.v1 6 604800000  # 7 days; key: student key
create_topic organization.v1 1 604800000  # 7 days; key: district id
create_topic roster.v1 6 604800000  # 7 days; key: district id
create_topic attendance.v1 6 604800000  # 7 days; key: student key
create_topic discipline.v1 6 604800000  # 7 days; key: student key
create_topic groups.v1 6 604800000  # 7 days; key: student key
create_topic calendar.v1 1 -1  # kept forever; key: district id
create_topic consent.v1 6 -1  # kept forever; key: student key
create_topic keys.v1 1 -1  # kept forever; key: district id
create_topic transfer.v1 6 -1  # kept forever; key: student key
create_topic disclosure.v1 6 -1  # kept forever; key: student key
create_topic incident.v1 1 -1  # kept forever; key: incident id
create_topic ingest.rejected.v1 6 2592000000  # 30 days; key: student key
# END TOPICS
