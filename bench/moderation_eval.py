"""Precision and recall of a moderation backend on the held-out labelled set.

    .venv/bin/python bench/moderation_eval.py [--backend builtin] [--threshold 0.5] [--errors]

The held-out set (``src/afinar/safety/data/moderation_heldout.jsonl``: ~10 texts per category,
100 benign, many of them look-alikes such as "how do I kill a stuck Docker container") was
written separately from the classifier's exemplars and is never trained on. Prints per-category
precision/recall (a text counts as positive for a category when its label includes it; parents
are implied by subcategories), then flagged-vs-benign precision/recall and the benign
false-flag rate, and the throughput of a warm backend. ``--errors`` lists every miss.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from afinar.config import Settings
from afinar.safety.categories import CATEGORIES
from afinar.safety.exemplars import HELDOUT, data_path, load_labelled
from afinar.safety.moderation import build_moderation_engine


def _pr(tp: int, fp: int, fn: int) -> tuple[float, float]:
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    return precision, recall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", default="builtin", choices=["builtin", "off"])
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument(
        "--data", type=Path, default=None, help="a labelled JSONL file (default: the held-out set)"
    )
    parser.add_argument("--errors", action="store_true", help="list the misclassified texts")
    args = parser.parse_args(argv)

    rows = load_labelled(args.data or data_path(HELDOUT))
    settings = Settings(
        moderation_backend=args.backend,
        moderation_threshold=args.threshold,
        data_dir=Path(os.environ.get("AFINAR_DATA_DIR", ".afinar")),
    )
    engine = build_moderation_engine(settings)
    t0 = time.perf_counter()
    engine.warm()
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = engine.moderate([r.text for r in rows])
    run_s = time.perf_counter() - t0

    n_harm = sum(r.harmful for r in rows)
    print(
        f"backend={engine.backend_name} threshold={args.threshold} texts={len(rows)} "
        f"(harmful {n_harm}, benign {len(rows) - n_harm})"
    )
    print(f"{'category':26s} {'n':>3s} {'precision':>9s} {'recall':>7s}")
    macro_p, macro_r = [], []
    for cat in CATEGORIES:
        tp = sum(1 for r, m in zip(rows, results, strict=True) if cat in r.categories and m.categories[cat])
        fp = sum(
            1 for r, m in zip(rows, results, strict=True) if cat not in r.categories and m.categories[cat]
        )
        fn = sum(
            1 for r, m in zip(rows, results, strict=True) if cat in r.categories and not m.categories[cat]
        )
        p, rec = _pr(tp, fp, fn)
        macro_p.append(p)
        macro_r.append(rec)
        print(f"{cat:26s} {tp + fn:3d} {p:9.2f} {rec:7.2f}")
    print(
        f"{'macro average':26s} {'':3s} {sum(macro_p) / len(macro_p):9.2f} {sum(macro_r) / len(macro_r):7.2f}"
    )

    tp = sum(1 for r, m in zip(rows, results, strict=True) if r.harmful and m.flagged)
    fp = sum(1 for r, m in zip(rows, results, strict=True) if not r.harmful and m.flagged)
    fn = sum(1 for r, m in zip(rows, results, strict=True) if r.harmful and not m.flagged)
    p, rec = _pr(tp, fp, fn)
    n_benign = len(rows) - n_harm
    print(
        f"flagged vs benign: precision {p:.2f}  recall {rec:.2f}  "
        f"benign false-flag rate {fp / max(n_benign, 1):.3f} ({fp}/{n_benign})"
    )
    print(f"load {load_s:.1f} s; {len(rows)} texts in {run_s:.2f} s ({len(rows) / run_s:.0f} texts/s, warm)")

    if args.errors:
        print("\nmisses (label → flagged categories):")
        for r, m in zip(rows, results, strict=True):
            got = set(m.flagged_categories)
            if got != set(r.categories):
                print(f"  {sorted(r.categories)!s:60s} → {sorted(got)!s:60s} {r.text[:70]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
