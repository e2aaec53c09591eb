"""One sync/async bridge and one client cache (brokers/shared.py), and nothing beside them.

An AST scan of brokers/ and dlqadmin/: making an event loop, bridging sync code into one, or
keeping clients in a process-wide cache with its own LRU, fork and exit handling happens only in
``brokers/shared.py``. A second bridge or cache (the way ``brokers.run`` and the Kafka producer
cache once stood beside it) makes this test fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THE_ONE_MODULE = "brokers/shared.py"

#: names that make a loop, bridge into one, or manage a process-wide cache's life.
BRIDGE_OR_CACHE = {
    "new_event_loop": "makes an event loop",
    "run_until_complete": "drives an event loop",
    "get_event_loop": "may make an event loop",
    "async_to_sync": "a sync->async bridge",
    "run_coroutine_threadsafe": "a sync->async bridge",
    "register_at_fork": "fork handling of a cache",
    "atexit": "exit handling of a cache",
    "OrderedDict": "an LRU table",
    "lru_cache": "a cache",
}

#: processes whose main loop is async throughout (they never bridge sync code into it).
MAIN_LOOPS = {
    ("dlqadmin/management/commands/harvest.py", "asyncio.run"),  # the harvest daemon
    ("brokers/simulate/__main__.py", "asyncio.run"),  # python -m brokers.simulate
}

#: memoisation of values (compiled patterns, parsed schemas by registry id), not client caches.
PURE_MEMOS = {
    ("dlqadmin/services/grouping.py", "lru_cache"),
    ("dlqadmin/masking.py", "lru_cache"),
    ("dlqadmin/decoding/confluent.py", "lru_cache"),  # a schema's parsed Avro, per schema text
    ("dlqadmin/services/schemas.py", "OrderedDict"),  # schemas by registry URL and id (issue 17)
}


def _uses(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in BRIDGE_OR_CACHE:
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            if node.attr in BRIDGE_OR_CACHE:
                found.add(node.attr)
            if node.attr == "run" and isinstance(node.value, ast.Name) and node.value.id == "asyncio":
                found.add("asyncio.run")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            found.update(alias.name for alias in node.names if alias.name in BRIDGE_OR_CACHE)
            if isinstance(node, ast.ImportFrom) and node.module == "asyncio":
                found.update("asyncio.run" for alias in node.names if alias.name == "run")
    return found


def _scan() -> dict[str, set[str]]:
    out = {}
    for folder in ("brokers", "dlqadmin"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            out[rel] = _uses(ast.parse(path.read_text(), filename=rel))
    return out


def test_only_brokers_shared_makes_loops_bridges_or_keeps_client_caches():
    scan = _scan()
    offenders = sorted(
        f"{path}: {name} ({BRIDGE_OR_CACHE.get(name, 'runs its own event loop')})"
        for path, names in scan.items()
        if path != THE_ONE_MODULE
        for name in names
        if (path, name) not in MAIN_LOOPS | PURE_MEMOS
    )
    assert not offenders, "use brokers.run / brokers.shared instead:\n" + "\n".join(offenders)


def test_the_scan_sees_the_one_bridge_and_cache_where_they_are():
    """The scan is not blind: it finds the loop, the bridge and the cache in brokers/shared.py
    and the harvest daemon's own loop."""
    scan = _scan()
    assert {"new_event_loop", "async_to_sync", "register_at_fork", "atexit", "OrderedDict"} <= scan[
        THE_ONE_MODULE
    ]
    assert "asyncio.run" in scan["dlqadmin/management/commands/harvest.py"]
