"""The Kafka adapter against a real Kafka-protocol broker (KAFKA_BOOTSTRAP, tansu here)."""
