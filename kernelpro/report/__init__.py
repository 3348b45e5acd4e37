"""`kernelpro report`: one self-contained HTML file for a run directory or a bench directory."""

from __future__ import annotations

from pathlib import Path


def write_report(directory: Path, output: Path | None = None) -> Path:
    """Render the report of a run (store.sqlite) or a bench (bench.sqlite); return its path."""
    directory = Path(directory)
    if (directory / "bench.sqlite").is_file():
        from kernelpro.report.bench_page import bench_page

        html = bench_page(directory)
    elif (directory / "store.sqlite").is_file():
        from kernelpro.report.run_page import run_page

        html = run_page(directory)
    else:
        raise ValueError(f"{directory}: not a run directory (store.sqlite) or a bench directory "
                         "(bench.sqlite)")
    path = Path(output) if output else directory / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html)
    return path
