#!/usr/bin/env python3
"""Draws bench/chart.svg from the ratios in bench/RESULTS.md.

Every bold ratio (a line like `- name: **0.82×** ...`) inside a generated block
(`<!-- bench:NAME -->` ... `<!-- /bench:NAME -->`) becomes one bar, so the chart shows exactly
the figures the bench scripts wrote. Plain SVG, no plotting library needed.

Usage: bench/chart.py
"""

import html
import pathlib
import re

HERE = pathlib.Path(__file__).resolve().parent
BLOCK = re.compile(r"<!-- bench:([\w-]+) -->(.*?)<!-- /bench:\1 -->", re.S)
RATIO = re.compile(r"^- (.+?): \*\*([0-9.]+)×\*\*", re.M)
# Ratios where lower is better (latency, memory) are drawn in another colour.
LOWER_IS_BETTER = ("p99", "RSS")

ROW_PX, LABEL_PX, BAR_PX, TOP_PX = 26, 380, 360, 40
SCALE_MAX = 2.0


def ratios(text):
    for block, body in BLOCK.findall(text):
        for name, value in RATIO.findall(body):
            yield block, name, float(value)


def svg(rows):
    height = TOP_PX + ROW_PX * len(rows) + 30
    width = LABEL_PX + BAR_PX + 80
    one = LABEL_PX + BAR_PX / SCALE_MAX
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        '<text x="10" y="20" font-size="14" font-weight="bold">'
        "txgate: ratios measured in the same run as each anchor (bench/RESULTS.md)</text>",
    ]
    for i, (block, name, value) in enumerate(rows):
        y = TOP_PX + i * ROW_PX
        length = min(value, SCALE_MAX) / SCALE_MAX * BAR_PX
        colour = "#d08c2c" if any(k in name for k in LOWER_IS_BETTER) else "#2c6fbb"
        label = html.escape(f"{block}: {name}")
        out += [
            f'<text x="{LABEL_PX - 8}" y="{y + 15}" text-anchor="end">{label}</text>',
            f'<rect x="{LABEL_PX}" y="{y + 4}" width="{length:.1f}" height="16" fill="{colour}"/>',
            f'<text x="{LABEL_PX + length + 6:.1f}" y="{y + 16}">{value:.2f}×</text>',
        ]
    bottom = TOP_PX + ROW_PX * len(rows)
    out += [
        f'<line x1="{one:.1f}" y1="{TOP_PX - 4}" x2="{one:.1f}" y2="{bottom}" stroke="#555" '
        'stroke-dasharray="4 3"/>',
        f'<text x="{one:.1f}" y="{bottom + 16}" text-anchor="middle">1.0× = parity</text>',
        f'<text x="{LABEL_PX}" y="{bottom + 16}" fill="#2c6fbb">higher is better</text>',
        f'<text x="{LABEL_PX + BAR_PX}" y="{bottom + 16}" fill="#d08c2c" text-anchor="end">'
        "lower is better</text>",
        "</svg>",
    ]
    return "\n".join(out) + "\n"


def main():
    rows = list(ratios((HERE / "RESULTS.md").read_text()))
    if not rows:
        raise SystemExit("no generated ratios in bench/RESULTS.md; run the bench scripts first")
    (HERE / "chart.svg").write_text(svg(rows))
    print(f"bench/chart.svg: {len(rows)} ratios")


if __name__ == "__main__":
    main()
