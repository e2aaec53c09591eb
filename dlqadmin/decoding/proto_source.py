"""``.proto`` source text compiled to a FileDescriptorSet, so the schema store takes what people
have (a main file plus the files it imports) as well as a descriptor set made with protoc.

The compiler is protoc itself, as bundled by ``grpcio-tools`` (``python -m grpc_tools.protoc``),
run in a child process on a private temporary directory: its error messages ("orders.proto:4:3:
Expected ";".") are what the uploader reads, and nothing it does touches this process. Google's
well-known types (``google/protobuf/timestamp.proto`` ...) are importable without uploading them.
"""

from __future__ import annotations

import base64
import posixpath
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from dlqadmin.decoding.confluent import RecordError

MAX_FILES = 64
MAX_TOTAL = 1024 * 1024
TIMEOUT = 30.0
_IMPORT = re.compile(r'^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;', re.MULTILINE)
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*\.proto$")


def compile_proto_files(files: dict[str, str]) -> str:
    """The base64 FileDescriptorSet (imports included) of ``files``, a mapping of file name (as
    the imports spell it, e.g. ``acme/common.proto``) to its text. A file uploaded under its bare
    name (a browser sends no folders) is placed at the path an import names it by. Raises
    RecordError with protoc's messages (file:line:column) when the text does not compile."""
    if not files:
        raise RecordError("no .proto files given")
    if len(files) > MAX_FILES:
        raise RecordError(f"more than {MAX_FILES} .proto files")
    if sum(len(text) for text in files.values()) > MAX_TOTAL:
        raise RecordError(f".proto files larger than {MAX_TOTAL} characters together")
    for name, text in files.items():
        if not isinstance(name, str) or not _NAME.match(name) or ".." in name.split("/"):
            raise RecordError(f"{name!r}: a .proto file name is a relative path ending in .proto")
        if not isinstance(text, str):
            raise RecordError(f"{name}: the file's text must be a string")
        if "\x00" in text:
            raise RecordError(f"{name}: not text (NUL character)")
    files = _placed(files)
    with tempfile.TemporaryDirectory(prefix="dlq-proto-") as tmp:
        root = Path(tmp) / "src"
        for name, text in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        out = Path(tmp) / "set.desc"
        command = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"--proto_path={root}",
            f"--proto_path={_well_known()}",
            "--include_imports",
            f"--descriptor_set_out={out}",
            *sorted(files),
        ]
        try:
            done = subprocess.run(command, cwd=root, capture_output=True, timeout=TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise RecordError(f"protoc took longer than {TIMEOUT:.0f} seconds") from None
        if done.returncode != 0 or not out.exists():
            message = done.stderr.decode("utf-8", "replace").replace(str(root) + "/", "").strip()
            raise RecordError(message or f"protoc failed (exit status {done.returncode})")
        return base64.b64encode(out.read_bytes()).decode("ascii")


def _placed(files: dict[str, str]) -> dict[str, str]:
    """Bare file names moved to the path an import names them by (``acme/common.proto`` for an
    uploaded ``common.proto``) when no uploaded file has that path and only one has that name."""
    wanted = {path for text in files.values() for path in _IMPORT.findall(text)}
    placed = dict(files)
    for path in sorted(wanted - set(files)):
        base = posixpath.basename(path)
        if base in placed and "/" not in base and base not in wanted:
            placed[path] = placed.pop(base)
    return placed


def _well_known() -> str:
    import grpc_tools  # the package bundles google/protobuf/*.proto under _proto

    return str(Path(grpc_tools.__file__).parent / "_proto")
