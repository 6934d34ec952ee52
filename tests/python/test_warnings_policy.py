"""The suite's warning policy (pyproject.toml, filterwarnings): deprecation notices and torch's
UserWarnings raised inside dependencies are reported, not failures, so a newer torch does not
break the suite; kancore's own warnings, whose messages start with "kancore", stay errors."""
import ast
import pathlib
import warnings

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "python" / "kancore"


def test_a_dependencys_deprecation_notice_is_not_an_error():
    # As torch's inductor does on import (the first H200 run failed every torch.compile test here).
    warnings.warn_explicit("some API is deprecated", DeprecationWarning, "inductor.py", 1,
                           module="torch._inductor.config")
    warnings.warn("a dependency's future change", FutureWarning)
    warnings.warn_explicit("a torch user warning", UserWarning, "autograd.py", 1, module="torch.autograd")


@pytest.mark.parametrize("category", [FutureWarning, DeprecationWarning, UserWarning, RuntimeWarning])
def test_kancores_own_warnings_are_errors(category):
    with pytest.raises(category):
        warnings.warn("kancore: anything", category)


def test_other_warnings_are_errors():
    with pytest.raises(RuntimeWarning):
        warnings.warn("overflow encountered", RuntimeWarning)


def test_a_deprecated_kancore_argument_fails_the_suite():
    torch = pytest.importorskip("torch")
    import kancore

    model = kancore.KAN([1, 2, 1])
    x = torch.linspace(-1, 1, 16).reshape(-1, 1)
    with pytest.raises(FutureWarning, match="^kancore: "):
        kancore.fit(model, x, x, epochs=1, X_val=x, y_val=x)


def _warn_messages(tree):
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "warn"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "warnings"):
            yield node


def test_every_kancore_warning_message_starts_with_kancore():
    # The policy rests on the prefix; a warning without it would be let through as a dependency's.
    calls = 0
    for path in sorted(PACKAGE.glob("*.py")):
        for call in _warn_messages(ast.parse(path.read_text())):
            calls += 1
            first = call.args[0] if call.args else None
            if isinstance(first, ast.JoinedStr):
                first = first.values[0] if first.values else None
            text = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
            assert text is not None and text.startswith("kancore"), (
                f"{path.name}:{call.lineno}: warnings.warn message must be a literal starting with 'kancore'")
    assert calls >= 2
