#!/usr/bin/env python3
"""Writes a benchmark object of SIZE_MIB MiB for the NDP scenarios.

    bench/scenarios/gen.py KIND OUT SIZE_MIB

KIND is
  words  random words w0..w39 separated by single spaces (wordcount,
         countstr, grep: ~67 M words per 256 MiB, 40 distinct);
  csv    lines "id,amount,label" with a signed amount (sumcol on column 1;
         one line in 1,000 has a non-number there, so `bad` moves too).
One MiB is generated from a fixed seed and repeated, so a 1024 MiB object
takes seconds to write and every run of a scenario reads the same bytes.
The MiB is cut at a separator, then padded with separators to exactly
1 MiB, so copies of it join without merging two words or two lines.
"""

import random
import sys

MIB = 1 << 20


def words_mib(rng):
    names = [f"w{i}" for i in range(40)]
    out, n = [], 0
    while n < MIB - 8:
        w = rng.choice(names) + " "
        out.append(w)
        n += len(w)
    text = "".join(out)
    return (text + " " * (MIB - len(text))).encode()


def csv_mib(rng):
    out, n, i = [], 0, 0
    while True:
        amount = "n/a" if rng.randrange(1000) == 0 else str(rng.randint(-100000, 100000))
        line = f"{i},{amount},{rng.choice(['red', 'green', 'blue'])}\n"
        if n + len(line) > MIB:
            break
        out.append(line)
        n += len(line)
        i += 1
    text = "".join(out)
    # Pad with newlines: empty lines, each counted as a line with a bad field.
    return (text + "\n" * (MIB - len(text))).encode()


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("words", "csv"):
        sys.exit(__doc__)
    kind, path = sys.argv[1], sys.argv[2]
    try:
        size = int(sys.argv[3])
    except ValueError:
        sys.exit(f"gen.py: SIZE_MIB is a whole number of MiB, got {sys.argv[3]!r}")
    if size < 1:
        sys.exit(f"gen.py: SIZE_MIB must be at least 1, got {size}")
    rng = random.Random(1)
    chunk = words_mib(rng) if kind == "words" else csv_mib(rng)
    assert len(chunk) == MIB
    with open(path, "wb") as f:
        for _ in range(size):
            f.write(chunk)


if __name__ == "__main__":
    main()
