"""Every command and file the docs (and the messages that point at the docs) name exists."""

import importlib.util
import re
from pathlib import Path

import pytest
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# files that tell an operator to run something or read something
POINTERS = [*DOCS, ROOT / ".env.example", ROOT / "docker-compose.yml", ROOT / "Dockerfile",
            *sorted((ROOT / "dlqadmin").rglob("*.py"))]  # fmt: skip


def mentions(pattern: str, files) -> list[tuple[str, str]]:
    found = []
    for path in files:
        for match in re.finditer(pattern, path.read_text()):
            found.append((str(path.relative_to(ROOT)), match.group(1)))
    return sorted(set(found))


def test_the_docs_name_commands_at_all():
    names = {name for _, name in mentions(r"manage\.py ([a-z_]+)", DOCS)}
    assert {"harvest", "generate_encryption_key", "rotate_encryption_key"} <= names


@pytest.mark.parametrize(("where", "command"), mentions(r"manage\.py ([a-z_]+)", POINTERS))
def test_every_manage_py_command_mentioned_exists(where, command):
    assert command in get_commands(), f"{where} names `manage.py {command}`, which does not exist"


@pytest.mark.parametrize(("where", "module"), mentions(r"python3? -m ([A-Za-z_][\w.]*)", POINTERS))
def test_every_python_m_module_mentioned_exists(where, module):
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"{where} names `python -m {module}`, which does not exist"
    if spec.submodule_search_locations:  # a package runs its __main__
        assert importlib.util.find_spec(f"{module}.__main__"), f"{where}: {module} has no __main__"


@pytest.mark.parametrize(("where", "doc"), mentions(r"\b(docs/[\w-]+\.md)", POINTERS))
def test_every_doc_mentioned_exists(where, doc):
    assert (ROOT / doc).is_file(), f"{where} points at {doc}, which does not exist"
