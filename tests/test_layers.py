"""Imports point one way (docs/architecture.md, "Package map"): every import in dlqadmin/ and
brokers/, module-level or inside a function, read from the source (AST), must point to the same
layer or one below. brokers/ imports nothing of dlqadmin. A module in no layer fails the test
too, so a new module is placed on the map when it is added.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYER_ROOTS = {"dlqadmin", "brokers"}

#: Top to bottom; a module may import its own layer and any layer below it, never one above.
LAYERS = [
    (
        "interface",
        (
            "dlqadmin.views",
            "dlqadmin.api",
            "dlqadmin.admin",
            "dlqadmin.management",
            "dlqadmin.consumers",
            "dlqadmin.routing",
            "dlqadmin.urls",
            "dlqadmin.asgi",
            "dlqadmin.wsgi",
            "dlqadmin.forms",
            "dlqadmin.templatetags",
            "dlqadmin.middleware",
            "dlqadmin.auth",
            "dlqadmin.apps",
        ),
    ),
    ("tasks", ("dlqadmin.tasks",)),
    ("services", ("dlqadmin.services", "dlqadmin.metrics")),
    ("selectors", ("dlqadmin.selectors", "dlqadmin.selectors_dashboard")),
    ("models", ("dlqadmin.models",)),
    (
        "helpers",
        (
            "dlqadmin.validators",
            "dlqadmin.masking",
            "dlqadmin.decoding",
            "dlqadmin.permissions",
            "dlqadmin.crypto",
            "dlqadmin.broker_options",
            "dlqadmin.live",
            "dlqadmin.tally_sql",
            "dlqadmin.search_sql",
            "dlqadmin.partition_sql",
            "dlqadmin.proxies",
        ),
    ),
    ("project", ("dlqadmin", "dlqadmin.settings", "dlqadmin.celery")),
    ("brokers", ("brokers",)),
]

#: Upward edges allowed, each with its reason: (importer layer, imported layer, only inside a function).
ALLOWED_UPWARD = {
    # Services enqueue on commit (``transaction.on_commit(lambda: task.delay(...))``); tasks.py
    # imports the services at module level, so the task is imported when the enqueue runs.
    ("services", "tasks"): "lazy",
}

#: Module prefixes that never import dlqadmin (brokers: adapters behind one contract).
INDEPENDENT = {"brokers": "dlqadmin"}


def layer_of(module: str) -> str | None:
    """The layer of a module (a prefix in LAYERS covers its submodules; the project package
    ``dlqadmin`` covers only its own ``__init__``)."""
    best, found = -1, None
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            covers = module == prefix or (prefix != "dlqadmin" and module.startswith(prefix + "."))
            if covers and len(prefix) > best:
                best, found = len(prefix), name
    return found


def layer_of_import(target: str) -> str | None:
    """The layer of what ``target`` names: a module, or a name defined in one (``a.b.Name``)."""
    parts = target.split(".")
    while parts:
        found = layer_of(".".join(parts))
        if found:
            return found
        parts.pop()
    return None


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path):
    """(imported module, line, lazy) for every import of dlqadmin or brokers in ``path``."""
    module = module_name(path, root)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []

    def visit(node, lazy):
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, lazy) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package[: len(package) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module
                # ``from dlqadmin import masking`` imports the module dlqadmin.masking
                found.extend((f"{target}.{alias.name}", child.lineno, lazy) for alias in child.names)
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), False)
    return [(target, line, lazy) for target, line, lazy in found if target.split(".")[0] in LAYER_ROOTS]


def source_files(root: Path):
    for top in sorted(LAYER_ROOTS):
        for path in sorted((root / top).rglob("*.py")):
            if "migrations" not in path.relative_to(root).parts:
                yield path


def violations(root: Path) -> list[str]:
    rank = {name: i for i, (name, _) in enumerate(LAYERS)}  # 0 is the top
    out = []
    for path in source_files(root):
        module = module_name(path, root)
        here = layer_of(module)
        if here is None:
            out.append(f"{module}: in no layer (add it to LAYERS and to the package map)")
            continue
        for target, line, lazy in imports_of(path, root):
            where = f"{path.relative_to(root)}:{line}"
            banned = INDEPENDENT.get(module.split(".")[0])
            if banned and target.split(".")[0] == banned:
                out.append(f"{where}: {module} imports {target} ({module.split('.')[0]} is independent)")
                continue
            there = layer_of_import(target)
            if there is None or rank[there] >= rank[here]:
                continue
            if ALLOWED_UPWARD.get((here, there)) == "lazy" and lazy:
                continue
            kind = "inside a function" if lazy else "at module level"
            out.append(f"{where}: {module} ({here}) imports {target} ({there}) {kind}")
    return out


def test_imports_point_down_the_layers():
    assert violations(ROOT) == []


def test_every_layer_names_modules_that_exist():
    """A renamed or deleted module leaves no stale entry behind on the map."""
    modules = {module_name(path, ROOT) for path in source_files(ROOT)}
    stale = [
        prefix
        for _, prefixes in LAYERS
        for prefix in prefixes
        if not any(m == prefix or m.startswith(prefix + ".") for m in modules)
    ]
    assert stale == []


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"dlqadmin/models/alerts.py": "from dlqadmin.services.alerts import check\n"},
            [
                "dlqadmin/models/alerts.py:1: dlqadmin.models.alerts (models) imports "
                "dlqadmin.services.alerts.check (services) at module level"
            ],
        ),
        (
            {"dlqadmin/models/masking.py": "def clean():\n    from dlqadmin.services import masking\n"},
            [
                "dlqadmin/models/masking.py:2: dlqadmin.models.masking (models) imports "
                "dlqadmin.services.masking (services) inside a function"
            ],
        ),
        (
            {"dlqadmin/selectors.py": "from dlqadmin import views\n"},
            [
                "dlqadmin/selectors.py:1: dlqadmin.selectors (selectors) imports dlqadmin.views (interface) "
                "at module level"
            ],
        ),
        (
            {"dlqadmin/models/__init__.py": "from ..services import redrive\n"},
            [
                "dlqadmin/models/__init__.py:1: dlqadmin.models (models) imports dlqadmin.services.redrive "
                "(services) at module level"
            ],
        ),
        (
            {"dlqadmin/services/alerts.py": "from dlqadmin.tasks import alert_deliver\n"},
            [
                "dlqadmin/services/alerts.py:1: dlqadmin.services.alerts (services) imports "
                "dlqadmin.tasks.alert_deliver (tasks) at module level"
            ],
        ),
        (
            {"dlqadmin/masking.py": "import dlqadmin.models\n"},
            [
                "dlqadmin/masking.py:1: dlqadmin.masking (helpers) imports dlqadmin.models (models) "
                "at module level"
            ],
        ),
        (
            {"brokers/base.py": "def f():\n    from dlqadmin.models import Source\n"},
            ["brokers/base.py:2: brokers.base imports dlqadmin.models.Source (brokers is independent)"],
        ),
        (
            {"dlqadmin/reports.py": ""},
            ["dlqadmin.reports: in no layer (add it to LAYERS and to the package map)"],
        ),
        # allowed: the lazy enqueue, downward imports, imports within a layer
        (
            {"dlqadmin/services/alerts.py": "def enqueue():\n    from dlqadmin.tasks import alert_deliver\n"},
            [],
        ),
        ({"dlqadmin/views/x.py": "from dlqadmin.services import alerts\nfrom brokers import base\n"}, []),
        (
            {"dlqadmin/selectors.py": "from dlqadmin.services.masking import Masker\n"},
            [
                "dlqadmin/selectors.py:1: dlqadmin.selectors (selectors) imports "
                "dlqadmin.services.masking.Masker (services) at module level"
            ],
        ),
        ({"dlqadmin/services/export.py": "from dlqadmin.selectors import dead_letters_for\n"}, []),
        ({"dlqadmin/models/masking.py": "from dlqadmin.masking import MaskingKind\n"}, []),
    ],
)
def test_the_check_finds_an_upward_import(tmp_path, files, expected):
    assert violations(write(tmp_path, files)) == expected
