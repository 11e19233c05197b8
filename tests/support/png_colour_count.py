#!/usr/bin/env python3
"""Counts the pixels of a PNG within TOLERANCE of a colour, per channel.

usage: png_colour_count.py FILE RRGGBB [TOLERANCE]
Prints the count. Used by the trace report test on a Chromium screenshot.
"""
import sys

from PIL import Image


def main() -> int:
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    want = tuple(int(sys.argv[2][i:i + 2], 16) for i in (0, 2, 4))
    tol = int(sys.argv[3]) if len(sys.argv) == 4 else 0
    img = Image.open(sys.argv[1]).convert("RGB")
    count = sum(1 for px in img.getdata() if all(abs(a - b) <= tol for a, b in zip(px, want)))
    print(count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
