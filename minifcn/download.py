"""python -m minifcn.download NAME... [--root DIR] [--mirror URL]: fetch datasets and weights, checked.

    python -m minifcn.download voc2012 voc2011 --root data/

The catalogue, the checks and where each file lands: ``minifcn.fetch``.
"""

from __future__ import annotations

import os
from typing import Sequence

from . import cli
from .fetch import CATALOGUE, MIRROR_VARIABLE, download


def build_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog="minifcn.download", description="Fetch datasets and weights, checked.")
    p.add_argument("names", nargs="+", metavar="NAME", help=f"what to fetch: {', '.join(CATALOGUE)}")
    p.add_argument("--root", default="data", help="where the files land (default data/)")
    p.add_argument(
        "--mirror",
        default=os.environ.get(MIRROR_VARIABLE),
        help=f"replaces each URL's scheme and host (default: ${MIRROR_VARIABLE})",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in args.names:
        path = download(name, args.root, args.mirror)
        entry = CATALOGUE[name]
        if entry.checksum is None:
            how = "checked by its size and content (no checksum is published for it)"
        else:
            how = (
                f"verified ({entry.checksum_by}'s {entry.checksum.split(':')[0]})" if entry.checksum_by else "verified"
            )
        print(f"minifcn: {name}: {path} {how}; {entry.lands or 'in ' + args.root}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
