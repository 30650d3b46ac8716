"""Checks of the tests themselves: an `all()` over an empty list is True, so every `all()`
over a comprehension in a test must be beside a check that its iterable is not empty."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def known_non_empty(iterable: ast.expr) -> bool:
    """A literal with items, or range(n) with a constant n > 0."""
    if isinstance(iterable, (ast.List, ast.Tuple, ast.Set)):
        return bool(iterable.elts)
    if (isinstance(iterable, ast.Call) and isinstance(iterable.func, ast.Name)
            and iterable.func.id == "range" and len(iterable.args) == 1):
        argument = iterable.args[0]
        return isinstance(argument, ast.Constant) and isinstance(argument.value, int) and argument.value > 0
    return False


def unguarded_alls(source: str) -> list[tuple[int, str]]:
    """(line, iterable) of each `all(<comprehension>)` whose iterable is not checked non-empty:
    by an `X and all(... for _ in X)`, an `assert` (or `len(X) == n`) on X earlier in the
    same function, or X being a non-empty literal."""
    tree = ast.parse(source)
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        asserted: list[tuple[int, str]] = [  # (line, text) of every assert in the function
            (node.lineno, ast.unparse(node.test)) for node in ast.walk(function) if isinstance(node, ast.Assert)]
        for node in ast.walk(function):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "all"
                    and node.args and isinstance(node.args[0], (ast.GeneratorExp, ast.ListComp))):
                continue
            iterable = node.args[0].generators[0].iter
            text = ast.unparse(iterable)
            if known_non_empty(iterable):
                continue
            guarded = False
            for line, test in asserted:
                before_the_all = test.split("all(")[0]
                if (line < node.lineno and text in test) or (line == node.lineno and text in before_the_all):
                    guarded = True
            if not guarded:
                found.append((node.lineno, text))
    return found


def test_the_lint_finds_an_unguarded_all_and_accepts_the_guarded_forms() -> None:
    bad = "def test_x(xs):\n    assert all(x > 0 for x in xs)\n"
    assert unguarded_alls(bad) == [(2, "xs")]
    for good in ("def test_x(xs):\n    assert xs and all(x > 0 for x in xs)\n",
                 "def test_x(xs):\n    assert len(xs) == 2 and all(x for x in xs)\n",
                 "def test_x(xs):\n    assert xs\n    assert all(x for x in xs)\n",
                 "def test_x():\n    assert all(x for x in (1, 2))\n",
                 "def test_x(f):\n    assert all(f(n) for n in range(3))\n"):
        assert unguarded_alls(good) == [], good
    # The guard must come first: `all(...) and xs` is still True on an empty xs... then fails
    # on `xs`, which is fine, but an `all` before its guard reads as unguarded here.
    assert unguarded_alls("def test_x(xs):\n    assert all(x for x in xs)\n    assert xs\n") == [(2, "xs")]


def test_no_test_has_an_all_over_a_possibly_empty_list() -> None:
    modules = sorted(TESTS.glob("*.py"))
    assert len(modules) > 20
    problems = [f"{path.name}:{line}: all() over {text}, which may be empty"
                for path in modules for line, text in unguarded_alls(path.read_text(encoding="utf-8"))]
    assert problems == []
