"""The command line every case generator shares: --out DIR [--force], and the stamp file that says
the cases in DIR are complete and newer than the scripts that made them (so ctest's fixtures
regenerate only what changed, and an interrupted run never looks done)."""
import argparse
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
# Files every generator relies on: a change to one of them makes every set of cases stale.
SHARED = ["llama_ref.py", "st.py", "cases_cli.py"]


def stamp_is_newer(stamp, scripts):
    """Whether `stamp` exists and is newer than each of `scripts` (names in this folder) and SHARED."""
    if not os.path.exists(stamp):
        return False
    paths = [os.path.join(HERE, f) for f in list(scripts) + SHARED]
    return os.path.getmtime(stamp) > max(os.path.getmtime(p) for p in paths)


def start(description, what, stamp_name, scripts):
    """Parses --out and --force. Returns (args, stamp path) when the cases must be written (the old
    stamp removed first), or None when the cases named `what` in --out are up to date."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--force", action="store_true", help="regenerate even when up to date")
    args = ap.parse_args()
    stamp = os.path.join(args.out, stamp_name)
    if not args.force and stamp_is_newer(stamp, scripts):
        print(f"{what} in {args.out} are up to date")
        return None
    torch.set_num_threads(1)  # same reduction order every run -> same bytes
    os.makedirs(args.out, exist_ok=True)
    if os.path.exists(stamp):
        os.remove(stamp)  # an interrupted run must not look up to date
    return args, stamp
