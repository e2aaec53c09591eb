"""docker-compose.yml describes the whole production stack (validated offline: no engine here)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_every_part_of_the_stack_is_a_service():
    assert {"postgres", "redis", "rabbitmq", "kafka", "nats", "web", "worker", "beat", "harvester"} <= set(
        SERVICES
    )


@pytest.mark.parametrize(
    ("service", "image"),
    [
        ("postgres", "postgres:16"),
        ("redis", "redis:7"),
        ("rabbitmq", "rabbitmq:3.13-management"),
        ("kafka", "apache/kafka:3.9.0"),
        ("nats", "nats:2.10"),
    ],
)
def test_infrastructure_images_are_pinned(service, image):
    assert SERVICES[service]["image"] == image


def test_every_long_running_service_has_a_healthcheck():
    for name, service in SERVICES.items():
        if name == "migrate":
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_app_services_use_postgres_redis_and_the_env_file():
    for name in ("web", "worker", "beat", "harvester"):
        service = SERVICES[name]
        assert service["env_file"] == ".env"
        assert service["environment"]["DATABASE_URL"].startswith("postgres://")
        assert service["environment"]["REDIS_URL"].startswith("redis://")
        assert service["environment"]["DEBUG"] == "false"
    assert SERVICES["harvester"]["command"][-2:] == ["harvest", "--follow"]
    assert "--follow" in SERVICES["harvester"]["command"]


@pytest.mark.parametrize("name", ["harvester", "worker"])
def test_harvester_and_worker_run_two_replicas_that_can_scale(name):
    service = SERVICES[name]
    assert service["deploy"]["replicas"] == 2
    assert "container_name" not in service and "ports" not in service  # either would stop scaling
    assert service["restart"] == "unless-stopped"  # a replica that dies comes back


def test_data_lives_in_named_volumes():
    for name in ("postgres", "redis", "rabbitmq", "kafka", "nats"):
        mounts = SERVICES[name]["volumes"]
        assert all(m.split(":")[0] in COMPOSE["volumes"] for m in mounts), name


def test_published_ports_bind_to_loopback_only():
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def _docker_compose_config(folder):
    """`docker-compose config -q` in folder (it reads docker-compose.yml and .env; no engine needed)."""
    if not shutil.which("docker-compose"):
        message = "Debian's docker-compose is not installed (scripts/ensure-services.sh installs it)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:  # as tests.conftest.IN_CI
            pytest.fail(message)
        pytest.skip(message)
    return subprocess.run(
        ["docker-compose", "config", "-q"], cwd=folder, capture_output=True, text=True, timeout=60
    )


def test_docker_compose_accepts_the_file(tmp_path):
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    result = _docker_compose_config(tmp_path)
    assert result.returncode == 0, result.stderr


def test_docker_compose_refuses_a_broken_file(tmp_path):
    """The check above is a real validation: an unknown option or a missing dependency is refused."""
    broken = dict(COMPOSE)
    broken["services"] = {**SERVICES, "web": {**SERVICES["web"], "restart_policy": "always"}}
    del broken["services"]["postgres"]
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(broken))
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    result = _docker_compose_config(tmp_path)
    assert result.returncode != 0
    assert "restart_policy" in result.stderr


def test_under_ci_a_missing_docker_compose_fails_instead_of_skipping(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="docker-compose is not installed"):
        _docker_compose_config(tmp_path)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        _docker_compose_config(tmp_path)
