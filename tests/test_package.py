"""Packaging: the install the README promises, and the rules every later change must keep."""
import ast, configparser, inspect, sys, textwrap

from conftest import ROOT, run, venv_bin


def test_fit_imports_in_a_clean_interpreter(tmp_path):
    r = run([sys.executable, "-c", "from dil_causal.train import fit; import dil_causal; print(dil_causal.__version__)"],
            cwd=tmp_path)  # not the repo root: the installed package, not the source folder on sys.path
    cfg = configparser.ConfigParser(); cfg.read(ROOT / "settings.ini")
    assert r.returncode == 0 and r.stdout.strip() == cfg["DEFAULT"]["version"], r.stderr


def test_no_quarto_cli_dependency():
    for f in ("settings.ini", "setup.py", "constraints.txt"):
        assert "quarto-cli" not in (ROOT / f).read_text().lower(), f


def test_torch_is_pinned_in_constraints():
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    assert "torch==2.13.0" in lines and "nbdev==2.4.14" in lines


def test_console_script_installed():
    r = run([venv_bin("dil-causal"), "--help"])
    assert r.returncode == 0


def discarded_docstring_parts(source: str, filename: str) -> list[str]:
    "Each function or class whose docstring is followed by another string statement (Python discards that one)."
    isstr = lambda s: isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str)
    return [f"{filename}:{n.body[1].lineno}: {n.name}" for n in ast.walk(ast.parse(source, filename))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and len(n.body) > 1
            and isstr(n.body[0]) and isstr(n.body[1])]


def test_every_docstring_is_one_string():
    "Issue #34: a docstring continued in a second string statement never reaches `help()` or the docs site."
    bad = [x for f in sorted((ROOT / "dil_causal").rglob("*.py"))
           for x in discarded_docstring_parts(f.read_text(), str(f.relative_to(ROOT)))]
    assert not bad, ("docstrings continued in a string statement that Python discards (make each one string, e.g. "
                     "parenthesised; edit the notebook):\n" + "\n".join(bad))
    two = 'def f(x):\n    "First half,"\n    " second half."\n    return x\n'
    assert discarded_docstring_parts(two, "f.py") == ["f.py:3: f"]   # the check sees the split form


def test_study_docstrings_carry_their_whole_text():
    import pydoc
    from dil_causal.study import adopt, selections
    assert "refine" in selections.__doc__ and "refine_top" in pydoc.render_doc(selections), selections.__doc__
    assert "reused_name" in adopt.__doc__, adopt.__doc__


BRANCHING = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.Try, ast.With, ast.AsyncWith, ast.IfExp)

def branch_points(source: str) -> int:
    "if/for/while/try/with statements, conditional expressions, each `and`/`or`, and each `for` and `if` of a comprehension."
    n = 0
    for node in ast.walk(ast.parse(textwrap.dedent(source))):
        if isinstance(node, BRANCHING): n += 1
        elif isinstance(node, ast.BoolOp): n += len(node.values) - 1  # `a and b or c`: two
        elif isinstance(node, ast.comprehension): n += 1 + len(node.ifs)
    return n


def test_branch_points_counts_each_kind():
    assert branch_points("x = 1") == 0
    assert branch_points("if a and b or c: pass") == 3
    assert branch_points("with f() as g:\n    for x in y:\n        pass\nelse_ = 1 if z else 2") == 3
    assert branch_points("try:\n    pass\nexcept E:\n    pass\nwhile q: pass") == 2
    assert branch_points("d = {k: v for k, v in e if v if k}") == 3


def test_fit_reads_like_accelerates_example():
    "Accelerate's examples/cv_example.py `training_function` has 15 branch points by this count; `fit` keeps to that."
    from dil_causal.train import fit
    n = branch_points(inspect.getsource(fit))
    assert n <= 15, f"fit has {n} branch points (at most 15): move what grew inline into a helper that owns it"
