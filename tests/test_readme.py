"""The README's Python examples run as written, in order, in a fresh process;
the command lines, options, file paths and RESULTS.md sections the docs name exist."""
import contextlib
import glob
import importlib
import io
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_python_blocks_run(tmp_path):
    for mod in ("torch", "onnx", "onnxruntime", "scipy"):
        pytest.importorskip(mod)
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert len(blocks) >= 4  # use, int8, sparse int8, models, compress
    script = tmp_path / "readme_examples.py"
    script.write_text("\n".join(blocks))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               SPARSEKIT_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "model.spk").exists()


# ---- the docs' command lines, file paths and RESULTS.md sections ----------------------

DOCS = ("README.md", "DEVELOPERS.md", os.path.join("docs", "FORMAT.md"))
# flags of other tools named in the docs (cmake, ctest, setup.py)
OTHER_TOOLS_FLAGS = {"--build", "--test-dir", "--inplace", "--deselect"}  # cmake, setup.py, pytest
OTHER_TOOLS_FLAGS |= {"--install", "--prefix", "--cflags", "--libs", "--static"}  # pkg-config


def _read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def _sparsekit_commands(text):
    """Every `sparsekit ...` / `python -m sparsekit ...` command line in code
    blocks and inline code, as the argument list after `sparsekit`."""
    spans = re.findall(r"```bash\n(.*?)```", text, re.S)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    spans = [line for block in spans for line in block.splitlines()]
    spans += re.findall(r"`([^`]+)`", text)
    out = []
    for span in spans:
        for part in span.replace("\n", " ").split("&&"):
            m = re.search(r"(?:^|\s)sparsekit\s+((?:info|bench-model|bench|pack)\b.*)", part)
            args = shlex.split(m.group(1), comments=True) if m else []
            if len(args) > 1 or args == ["info"]:  # not a bare name (`sparsekit bench`)
                out.append(args)
    return out


def test_docs_sparsekit_commands_parse():
    from sparsekit.cli import build_parser

    commands = [c for doc in DOCS for c in _sparsekit_commands(_read(doc))]
    assert len(commands) >= 5, commands  # quick start, full sweep, bench-model, info, ...
    for args in commands:
        parser = build_parser()
        if "--help" in args:
            with pytest.raises(SystemExit) as e, contextlib.redirect_stdout(io.StringIO()):
                parser.parse_args(args)
            assert e.value.code == 0, args
        else:
            parser.parse_args(args)  # argparse exits (SystemExit 2) on a stale option


def _option_strings():
    from sparsekit.cli import build_parser

    pack = importlib.import_module("sparsekit.pack")  # the module: sparsekit.pack is the function
    opts = set()
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for p in sub.choices.values():
        opts.update(s for a in p._actions for s in a.option_strings)
    buf = io.StringIO()
    with pytest.raises(SystemExit), contextlib.redirect_stdout(buf):
        pack._main(["--help"])  # python -m sparsekit.pack
    opts.update(re.findall(r"--[a-z][a-z0-9-]*", buf.getvalue()))
    return opts


def test_docs_name_only_existing_options():
    known = _option_strings() | OTHER_TOOLS_FLAGS
    for doc in DOCS:
        named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", _read(doc)))
        assert named <= known, f"{doc} names options no command has: {sorted(named - known)}"


def test_docs_name_only_existing_files():
    top = {"kernels", "sparsekit", "tests", "benchmarks", "docs", ".ci"}
    checked = 0
    for doc in DOCS:
        for path in re.findall(r"[\w.<>*-]*/[\w./<>*-]+", _read(doc)):
            path = path.rstrip(".")
            if path.split("/")[0] not in top:
                continue  # prose (bytes/weight), outputs (bench-out/...), build dirs
            pattern = re.sub(r"<[^>]+>", "*", path)
            assert glob.glob(os.path.join(ROOT, pattern)), f"{doc}: {path} does not exist"
            checked += 1
    assert checked >= 10


def test_results_sections_named_in_docs_exist():
    """`benchmarks/RESULTS.md ("Section")` in the docs and docstrings names a heading."""
    headings = [line.lower() for line in _read(os.path.join("benchmarks", "RESULTS.md"))
                .splitlines() if line.startswith("#")]
    sources = [_read(doc) for doc in DOCS] + [
        _read(os.path.relpath(p, ROOT))
        for p in glob.glob(os.path.join(ROOT, "sparsekit", "**", "*.py"), recursive=True)]
    names = []
    for text in sources:
        for name in re.findall(r'RESULTS\.md[,\s(]*"([^"]{3,100})"', text):
            names.append(" ".join(name.replace("#", " ").split()).lower())
    assert len(names) >= 3
    for name in names:
        assert any(name in h for h in headings), f'no RESULTS.md section "{name}"'
