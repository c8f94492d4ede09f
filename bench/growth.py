"""How the cost of a search grows with the desk: 1k, 10k and 100k tickets (and more).

    python -m bench.growth [--sizes 1000,10000,100000] [--backend sqlite|postgresql|both]
                           [--passes 5] [--keep DIR] [--intake]

Each size is a desk made by :mod:`bench.gen` (the same generator and seed as
:mod:`bench.largedb`, so 1M is the same kind of desk, ten times larger than 100k), kept
in ``DIR`` (default ``bench/data/``) and reused. On each, the searches of
:func:`bench.largedb.search_mix` (the same ~110 texts at every size, less any the
``search`` command refuses, such as pages beyond its limit) run through
``SqlStore.run(lambda repo: repo.search(...))``: one untimed pass, then ``--passes``
timed ones. Reported per size: ms per search, p50 and p95 (median over the passes),
the median per kind of search, and the ratio from one size to the next (ten times
larger). Growth "no worse than logarithmic" would be a ratio of about
log(10 N) / log(N): 1.33 from 1k to 10k, 1.25 from 10k to 100k, 1.2 from 100k to 1M.

The words searched for are the same at every size, so a common word has ten times as
many hits in a ten times larger desk: the ratio of a kind shows whether its cost follows
the index lookup (rare words) or the number of hits (common words, which count and sort
every match).

``--intake`` also runs :mod:`bench.intake` (real Dovecot) at each of ``--intake-counts``
(default 1000 and 10000) and reports ms per message of ticketbot's intake (c) at each.

Results: ``bench/results/growth-<timestamp>.json``. A benchmark: never fails for slowness.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import itertools
import json
import logging
import math
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import gen
from bench.largedb import (
    ADMIN,
    RESULTS,
    ROOT,
    Search,
    machine,
    run_searches,
    search_mix,
    summarise_searches,
)


def accepted_searches() -> tuple[list[Search], list[str]]:
    """:func:`bench.largedb.search_mix` less what the ``search`` command now refuses
    (e.g. ``page:500`` beyond its page limit), with the refused texts, to report."""
    from bot.domain import TicketError
    from bot.search import parse_search

    kept: list[Search] = []
    refused: list[str] = []
    for search in search_mix():
        try:
            parse_search(search.text, ADMIN)
        except TicketError:
            refused.append(search.text)
        else:
            kept.append(search)
    return kept, refused


async def measure_size(url: str, passes: int) -> dict[str, Any]:
    from storage.store import SqlStore

    store = await SqlStore.open(url)
    try:
        searches = accepted_searches()[0]
        await run_searches(store, searches)  # warm-up, untimed
        runs = []
        for _ in range(passes):
            runs.append(await run_searches(store, searches))
    finally:
        await store.close()
    summary = summarise_searches(runs)
    del summary["queries"]
    summary["queries"] = [
        {"kind": q["kind"], "text": q["text"], "total": q["total"], "ms_median": q["ms_median"]}
        for q in summarise_searches(runs)["queries"]
    ]
    return summary


def measure_sizes(
    make: Callable[[int], gen.Built], sizes: Sequence[int], passes: int
) -> tuple[dict[int, dict[str, Any]], dict[int, Any]]:
    """Search each desk (made or reused by ``make``); the summaries and the desks' metadata."""
    by_size: dict[int, dict[str, Any]] = {}
    databases: dict[int, Any] = {}
    for size in sizes:
        built = make(size)
        databases[size] = built.meta
        print(f"searching the {size:,}-ticket desk ({passes} passes) ...", flush=True)
        by_size[size] = asyncio.run(measure_size(built.url, passes))
        print(f"  p50 {by_size[size]['p50_ms']:.2f} ms, p95 {by_size[size]['p95_ms']:.2f} ms")
    return by_size, databases


def log_ratio(small: int, large: int) -> float:
    return math.log(large) / math.log(small)


def growth_table(sizes: list[int], by_size: dict[int, dict[str, Any]]) -> dict[str, Any]:
    steps = []
    for small, large in itertools.pairwise(sizes):
        a, b = by_size[small], by_size[large]
        kinds = {
            kind: b["by_kind"][kind]["p50_ms"] / a["by_kind"][kind]["p50_ms"]
            for kind in a["by_kind"]
            if a["by_kind"][kind]["p50_ms"] > 0
        }
        steps.append(
            {
                "from": small,
                "to": large,
                "size_ratio": large / small,
                "p50_ratio": b["p50_ms"] / a["p50_ms"],
                "p95_ratio": b["p95_ms"] / a["p95_ms"],
                "log_bound": log_ratio(small, large),
                "kind_p50_ratios": kinds,
            }
        )
    return {"steps": steps}


def print_growth(backend: str, sizes: list[int], by_size: dict[int, dict[str, Any]],
                 table: dict[str, Any]) -> None:  # fmt: skip
    print(f"\n== search cost growth, {backend} ==")
    header = f"{'':26}" + "".join(f"{s:>12,}" for s in sizes)
    print(header)
    print(f"{'p50 ms':26}" + "".join(f"{by_size[s]['p50_ms']:12.2f}" for s in sizes))
    print(f"{'p95 ms':26}" + "".join(f"{by_size[s]['p95_ms']:12.2f}" for s in sizes))
    for kind in by_size[sizes[0]]["by_kind"]:
        print(
            f"{kind:26}" + "".join(f"{by_size[s]['by_kind'][kind]['p50_ms']:12.2f}" for s in sizes)
        )
    for step in table["steps"]:
        print(
            f"  {step['from']:,} -> {step['to']:,}: p50 x{step['p50_ratio']:.2f}, "
            f"p95 x{step['p95_ratio']:.2f} (logarithmic would be x{step['log_bound']:.2f})"
        )


def run_intake(counts: Sequence[int], runs: int) -> dict[str, Any]:
    """bench.intake at each count; ms per message of (c), from its results file."""
    out: dict[str, Any] = {}
    for count in counts:
        before = set(glob.glob(str(RESULTS / "intake-*.json")))
        print(f"\nbench.intake --count {count} --runs {runs} ...", flush=True)
        proc = subprocess.run(
            [sys.executable, "-m", "bench.intake", "--count", str(count), "--runs", str(runs)],
            cwd=ROOT, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            out[str(count)] = {"error": f"bench.intake exited with {proc.returncode}"}
            continue
        new = sorted(set(glob.glob(str(RESULTS / "intake-*.json"))) - before)
        data = json.loads(Path(new[-1]).read_text())
        rates = data["median_messages_per_second"]
        out[str(count)] = {
            "results_file": Path(new[-1]).name,
            "msg_per_s": rates,
            "ms_per_msg_c": 1000 / rates["c"],
            "ratio_c_b": data["ratios"].get("c/b"),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.growth", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=gen.DEFAULT_SEED)
    parser.add_argument("--keep", type=Path, default=gen.DATA, metavar="DIR")
    parser.add_argument("--intake", action="store_true", help="also bench.intake (real Dovecot)")
    parser.add_argument(
        "--intake-counts", default="1000,10000", metavar="N,N",
        help="message counts for --intake (default 1000,10000; 100000 takes ~15 min a run)",
    )  # fmt: skip
    parser.add_argument("--intake-runs", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    started = time.perf_counter()
    result: dict[str, Any] = {
        "command": " ".join(["python -m bench.growth", *sys.argv[1:]]),
        "sizes": sizes,
        "passes": args.passes,
        "searches": len(accepted_searches()[0]),
        "refused_searches": accepted_searches()[1],
        "backends": {},
    }
    first_url = ""
    for backend in backends:
        if backend == "sqlite":
            by_size, databases = measure_sizes(
                lambda size: gen.sqlite_database(size, args.seed, args.keep), sizes, args.passes
            )
            first_url = first_url or gen.sqlite_database(sizes[0], args.seed, args.keep).url
        else:
            with gen.postgres_cluster(args.keep) as server:
                result.setdefault("postgres", machine(server)["postgres"])
                by_size, databases = measure_sizes(
                    lambda size: gen.postgres_database(server, size, args.seed, args.keep),
                    sizes,
                    args.passes,
                )
        table = growth_table(sizes, by_size)
        print_growth(backend, sizes, by_size, table)
        result["backends"][backend] = {
            "by_size": {str(s): v for s, v in by_size.items()},
            "growth": table,
            "databases": {str(s): v for s, v in databases.items()},
        }
    if args.intake:
        counts = [int(c) for c in args.intake_counts.split(",")]
        result["intake"] = run_intake(counts, args.intake_runs)
        for count, data in result["intake"].items():
            if "ms_per_msg_c" in data:
                print(f"intake {int(count):>6,} messages: {data['ms_per_msg_c']:.2f} ms/msg (c)")
    result["machine"] = machine(first_url or "sqlite://")
    result["total_seconds"] = time.perf_counter() - started
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"growth-{stamp}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n")
    print(f"\nwritten {path} ({result['total_seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
