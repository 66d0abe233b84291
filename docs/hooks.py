"""mkdocs hook: publish the benchmark plots from benchmarks/results/ beside the results page.

docs/benchmarks/results.md includes benchmarks/results/latest.md (pymdownx.snippets), whose
images are relative (`hit_concurrency.png`); this adds those PNGs to the site under
benchmarks/, so the page and its images come from the one copy the benchmark run writes.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
# Site path of each generated file -> the repository file it comes from.
GENERATED = {f"benchmarks/{png.name}": png for png in sorted(RESULTS.glob("*.png"))}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for uri, source in GENERATED.items():
        files.append(File.generated(config, uri, abs_src_path=str(source)))
    return files
