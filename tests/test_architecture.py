"""The package's layer order (pyproject ``[tool.importlinter]``, README "Layout") is kept.

``lint-imports`` (import-linter) checks every import inside ``cryomaps``, function-level ones
included; a second check lists the function-level imports of cryomaps modules, which are allowed only
where they buy start-up time: in ``cryomaps.cli`` and ``cryomaps.commands`` (each command imports its
heavy modules when it runs), or with a ``# lazy:`` comment that gives the reason.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "cryomaps"


def run_lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the pyproject of ``root``, with ``root`` first on the import path."""
    command = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
               "--no-cache"]
    return subprocess.run(command, cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


def test_the_layer_contract_is_kept():
    result = run_lint_imports(REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_a_back_edge_breaks_the_contract(tmp_path):
    """A low layer importing a high one (io -> commands) is reported, naming the file and line."""
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(PACKAGE, tmp_path / "cryomaps", ignore=shutil.ignore_patterns("*.pt", "__pycache__", "configs"))
    grid = tmp_path / "cryomaps" / "io" / "grid.py"
    grid.write_text(grid.read_text() + "\n\ndef _back_edge():\n    from cryomaps.commands import options\n")
    result = run_lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "cryomaps.io is not allowed to import cryomaps.commands" in result.stdout
    assert "cryomaps.io.grid -> cryomaps.commands.options" in result.stdout


def function_level_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import statement inside a function of ``path``."""
    tree = ast.parse(path.read_text())
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                found += [(node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                found.append((node.lineno, "." * node.level + (node.module or "")))
    return sorted(set(found))


def test_function_level_imports_of_cryomaps_outside_the_commands_give_their_reason():
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(REPO)
        if relative.parts[1] == "commands" or relative.name == "cli.py":
            continue
        lines = path.read_text().splitlines()
        for line_number, module in function_level_imports(path):
            if not module.startswith(("cryomaps", ".")):
                continue
            context = lines[line_number - 1] + (lines[line_number - 2] if line_number > 1 else "")
            if "# lazy:" not in context:
                unexplained.append(f"{relative}:{line_number} imports {module}")
    assert not unexplained, "function-level imports without a '# lazy: reason' comment:\n" + "\n".join(unexplained)


@pytest.mark.parametrize("module", ["cryomaps.cli"])
def test_the_cli_module_stays_light(module):
    """``cryomaps --help`` imports no torch (start-up time; the commands import it when they run)."""
    code = f"import sys, {module}; {module}.build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.stdout.strip() == "False", result.stderr
