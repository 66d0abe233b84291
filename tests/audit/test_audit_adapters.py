"""The adapters on the fixture corpus: decoys stay clean, unrecognised cache code is never a
pass, declared wrappers are analysed, legacy encodings are read as CPython reads them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from audit_support import FIXTURES, materialise

from freshcache.audit import exit_status, load_config, run_audit
from freshcache.audit.model import CheckStatus
from freshcache.audit.render_md import render_markdown

CORPUS = sorted(p.name for p in FIXTURES.iterdir() if p.name.startswith("corpus_"))


def _decoy_spans(root: Path) -> list[tuple[str, int, int]]:
    """(file, first line, last line) of every function whose def line says "# decoy"."""
    spans = []
    for path in sorted(root.rglob("*.py")):
        raw = path.read_bytes()
        tree = ast.parse(raw)
        lines = raw.decode("latin-1").splitlines()
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                header = lines[node.lineno - 1 : node.body[0].lineno - 1] or [
                    lines[node.lineno - 1]
                ]
                if any("# decoy" in line for line in header):
                    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                    spans.append((path.relative_to(root).as_posix(), first, node.end_lineno or 0))
    return spans


@pytest.mark.parametrize("name", [n for n in CORPUS if n != "corpus_unrecognised"])
def test_no_finding_on_a_decoy(name: str, tmp_path: Path) -> None:
    root = materialise(name, tmp_path)
    spans = _decoy_spans(root)
    assert spans, f"{name} has no decoy"
    result = run_audit([root], root)
    decoys = {r.qualname for r in result.reads for f, a, b in spans
              if r.location.file == f and a <= r.location.line <= b}  # fmt: skip
    assert decoys, "the decoys must be read by the audit, or they prove nothing"
    on_decoys = [
        f
        for f in result.findings
        for file, first, last in spans
        if f.location is not None and f.location.file == file and first <= f.location.line <= last
    ]
    assert on_decoys == []
    assert not any(f.subject.split(":", 1)[-1] in decoys for f in result.findings)


@pytest.mark.parametrize("name", CORPUS)
def test_every_corpus_read_has_its_api_and_a_replacement(name: str, tmp_path: Path) -> None:
    root = materialise(name, tmp_path)
    result = run_audit([root], root)
    assert result.apis or result.unanalysed
    plan = {m.subject: m for m in result.migration}
    for read in result.reads:
        assert read.api != "freshcache"
        assert plan[read.id].replacement.startswith("@cached(ttl=")
    for write in result.writes:
        assert "invalidate" in plan[write.id].replacement


def test_an_unrecognised_cache_wrapper_is_not_a_pass_and_is_named(tmp_path: Path) -> None:
    root = materialise("corpus_unrecognised", tmp_path)
    result = run_audit([root], root)
    report = render_markdown(result)
    status = next(line for line in report.splitlines() if line.startswith("**Status:**"))
    assert "PASS" not in status
    assert "NOT VERIFIED" in report
    assert [u.what for u in result.unanalysed] == ["@cache_response on recent_posts"]
    assert "blog/posts.py:6" in report
    understood = next(c for c in result.checklist if c.id == "cache-code-understood")
    assert understood.status is CheckStatus.FAIL
    assert "cache_response" in understood.evidence
    # --fail-on's default (error) fails CI on it.
    assert exit_status(result, "error") == 1


def test_a_declared_wrapper_is_analysed(tmp_path: Path) -> None:
    root = materialise("corpus_unrecognised", tmp_path)
    (root / "pyproject.toml").write_text(
        "[[tool.freshcache.audit.wrappers]]\n"
        'name = "starlette_extras.caching.cache_response"\n'
        'kind = "read"\nttl = "seconds"\nkey = "prefix"\nkey_args = "all"\n',
        encoding="utf-8",
    )
    result = run_audit([root], root, load_config(root))
    assert result.unanalysed == ()
    (read,) = result.reads
    assert (read.qualname, read.ttl, read.key_params) == ("recent_posts", 30.0, ("limit",))
    assert read.key is not None
    assert read.key.display.startswith("posts:")
    assert {f.rule for f in result.findings} == {"FC101"}  # nothing invalidates it


def test_a_declared_wrapper_with_a_bad_kind_is_a_clear_error(tmp_path: Path) -> None:
    from freshcache.audit import ConfigError

    (tmp_path / "pyproject.toml").write_text(
        '[[tool.freshcache.audit.wrappers]]\nname = "x.memo"\nkind = "cache"\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="kind must be 'read' or 'invalidate'"):
        load_config(tmp_path)


def test_a_latin1_module_with_a_coding_line_is_analysed(tmp_path: Path) -> None:
    root = materialise("corpus_homegrown", tmp_path)
    assert b"\xe9" in (root / "shop" / "legacy.py").read_bytes()  # really latin-1 on disk
    result = run_audit([root], root)
    assert result.errors == ()
    assert "Carte.plats" in {r.qualname for r in result.reads}


def test_vendored_and_generated_folders_are_skipped(tmp_path: Path) -> None:
    root = materialise("corpus_unrecognised", tmp_path)
    for folder in (
        ".venv/lib",
        "venv",
        "node_modules/x",
        "site-packages/y",
        "migrations",
        "generated",
    ):
        target = root / folder
        target.mkdir(parents=True)
        (target / "mod.py").write_text("def broken(:\n", encoding="utf-8")
    (root / "blog" / "api_pb2.py").write_text("def broken(:\n", encoding="utf-8")
    result = run_audit([root], root)
    assert result.errors == ()
    assert result.files == ("blog/__init__.py", "blog/posts.py")


def test_ttl_zero_is_an_error_as_the_runtime_refuses_it(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "from freshcache import cached, invalidate_cache\n\n\n"
        '@cached(ttl=0, key_prefix="x")\nasync def f(a: int) -> int:\n    return a\n\n\n'
        '@invalidate_cache("x:*")\nasync def g() -> None:\n    pass\n',
        encoding="utf-8",
    )
    result = run_audit([tmp_path], tmp_path)
    (ttl,) = [f for f in result.findings if f.rule == "FC103"]
    assert ttl.severity.value == "error"
    assert "refused at import" in ttl.message


def test_modules_outside_packages_are_followed_by_their_path(tmp_path: Path) -> None:
    # An application run from its root: folders without __init__.py, imported by path.
    (tmp_path / "shared").mkdir()
    (tmp_path / "items").mkdir()
    (tmp_path / "shared" / "cache.py").write_text(
        "from aiocache import RedisCache\n\ncache = RedisCache(ttl=30)\n", encoding="utf-8"
    )
    (tmp_path / "items" / "router.py").write_text(
        "from shared.cache import cache\n\n\n"
        "async def items(page: int) -> list:\n"
        '    hit = await cache.get("items")\n'
        "    if hit:\n        return hit\n"
        "    value = [page]\n"
        '    await cache.set("items", value)\n'
        "    return value\n",
        encoding="utf-8",
    )
    result = run_audit([tmp_path], tmp_path)
    (read,) = result.reads
    assert (read.module, read.api, read.ttl) == ("items.router", "aiocache cache-aside", 30.0)
    assert [f.rule for f in result.findings if f.rule == "FC116"] == ["FC116"]


def _cashews_read(tmp_path: Path, setup: str) -> tuple[str | None, bool, set[str]]:
    (tmp_path / "menu.py").write_text(
        f"from cashews import cache\n\n{setup}\n\n\n"
        '@cache(ttl="5m", key="menu:{day}")\n'
        "async def menu(day: str) -> list:\n    return [day]\n\n\n"
        '@cache.invalidate("menu:{day}")\nasync def edit(day: str) -> None:\n    pass\n',
        encoding="utf-8",
    )
    result = run_audit([tmp_path], tmp_path)
    (read,) = result.reads
    return read.serializer, read.signing_key, {f.rule for f in result.findings}


def test_cashews_without_a_setup_is_its_default_unsigned_pickle(tmp_path: Path) -> None:
    # cache.setup(...) made from configuration outside the code base: cashews' Redis default.
    serializer, signed, rules = _cashews_read(tmp_path, "")
    assert (serializer, signed) == ("pickle", False)
    assert "FC110" in rules


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ('cache.setup("redis://cache:6379/0", secret="s3cret")', ("pickle", True)),
        ('cache.setup("mem://")', ("memory", False)),
    ],
)
def test_cashews_setup_decides_the_serializer(
    setup: str, expected: tuple[str, bool], tmp_path: Path
) -> None:
    serializer, signed, rules = _cashews_read(tmp_path, setup)
    assert (serializer, signed) == expected
    assert "FC110" not in rules
