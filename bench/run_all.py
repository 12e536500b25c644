"""Run every benchmark and write the results into bench/README.md (``make bench``).

    .venv/bin/python bench/run_all.py [--quick] [--no-write]

Each benchmark runs in its own process, one after the other (they would skew each other if
run together). The generated part of bench/README.md is everything between
``<!-- BEGIN results -->`` and ``<!-- END results -->``; the rest is written by hand. Takes
~20 minutes on 2 cores; --quick (1,000 and 10,000 namespaces, fewer repeats, a 2,000-namespace
scale run) ~7 minutes and does not touch the README unless --write is given.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import common
from common import BENCH, ROOT, machine_table

README = BENCH / "README.md"
BEGIN, END = "<!-- BEGIN results -->", "<!-- END results -->"


def benches(quick: bool) -> list[list[str]]:
    if quick:
        return [["render.py", "--sizes", "1000,10000", "--repeats", "3,2"],
                ["scrape.py", "--sizes", "1000,10000", "--duration", "2"],
                ["memory.py", "--sizes", "1000,10000"],
                ["poll.py", "--repeats", "1"],
                ["poll.py", "--repeats", "1", "--nodelay"],
                ["scale.py", "--sizes", "2000", "--watch", "30", "--learn-seconds", "75"]]
    # scale.py's own defaults (50,000 namespaces, 150 s watches) take ~15 minutes alone.
    return [["render.py"], ["scrape.py"], ["memory.py"], ["poll.py"], ["poll.py", "--nodelay"],
            ["scale.py", "--sizes", "10000", "--watch", "60", "--learn-seconds", "90"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write", action="store_true", help="write README.md even with --quick")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    sections = [f"Run {started} by `bench/run_all.py{' --quick' if args.quick else ''}`.\n",
                machine_table(), ""]
    for cmd in benches(args.quick):
        print(f"== {' '.join(cmd)}", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        res = subprocess.run([sys.executable, str(BENCH / cmd[0]), *cmd[1:]], cwd=ROOT,
                             capture_output=True, text=True)
        if res.returncode != 0:
            print(res.stdout, res.stderr, file=sys.stderr)
            raise SystemExit(f"{cmd[0]} failed with exit code {res.returncode}")
        print(res.stdout, flush=True)
        print(f"   ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
        if cmd[0] == "poll.py" and "## Poll cycle\n" not in sections:
            sections.append("## Poll cycle\n")
        if cmd[0] == "scale.py":
            sections.append("## Scale: counts first on a rate-limited key\n")
        sections.append(res.stdout.strip() + "\n")
    load = common.machine()["load average when the run started (1/5/15 min)"]
    sections.append(f"Load average at the end: {load}.\n")
    if args.no_write or (args.quick and not args.write):
        return
    text = README.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    README.write_text(head + BEGIN + "\n" + "\n".join(sections) + "\n" + END + tail)
    print(f"wrote {README.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
