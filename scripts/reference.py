"""Write (or check) the generated reference pages of the docs: the spec keys and the environment
variables, from the models that parse them.

    python scripts/reference.py --write     # docs/reference/spec.md, docs/reference/settings.md
    python scripts/reference.py             # exit 1 if a page differs from what the models say
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from modelmill.ops.reference_docs import PAGES, render  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write the pages instead of checking them")
    args = ap.parse_args()
    stale = []
    for page in PAGES:
        path = REPO / "docs" / "reference" / page
        text = render(page)
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO)}")
        elif not path.is_file() or path.read_text() != text:
            stale.append(str(path.relative_to(REPO)))
    if stale:
        print(f"out of date (run `python scripts/reference.py --write`): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
