"""Render the lessons to HTML that shows its maths offline (``make lessons-html``).

nbconvert's pages load MathJax from a CDN by default: opened without a network, every formula is
raw TeX. Here MathJax comes from the ``jupyter-server-mathjax`` package (a copy of MathJax 2.7,
the version nbconvert's template speaks), copied beside the pages, and the pages point at it.

    python lessons/render_html.py [--no-execute] [--out build/lessons] [NOTEBOOK ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MATHJAX_URL = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"  # relative to the pages


def local_mathjax() -> Path:
    try:
        import jupyter_server_mathjax  # noqa: PLC0415
    except ImportError:
        sys.exit("render_html: MathJax for offline pages comes from jupyter-server-mathjax: "
                 "pip install -e '.[lessons]' (or make lessons-html)")
    return Path(jupyter_server_mathjax.__file__).parent / "static"


def render(notebooks, out: Path, execute: bool = True) -> int:
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "mathjax", ignore_errors=True)
    shutil.copytree(local_mathjax(), out / "mathjax")
    cmd = [sys.executable, "-m", "nbconvert", "--to", "html", "--output-dir", str(out),
           f"--HTMLExporter.mathjax_url={MATHJAX_URL}", *(["--execute"] if execute else []), *map(str, notebooks)]
    return subprocess.call(cmd, env={**os.environ, "MINIROBUST_LESSON_SIZE": "small"})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", help="default: every numbered lesson")
    parser.add_argument("--out", default="build/lessons", help="output folder (default build/lessons)")
    parser.add_argument("--no-execute", action="store_true", help="render as committed (no outputs)")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    return render(notebooks, Path(args.out), execute=not args.no_execute)


if __name__ == "__main__":
    sys.exit(main())
