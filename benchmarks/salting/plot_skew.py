#!/usr/bin/env python3
"""Draws the skew benchmark's table as an SVG bar chart (no dependencies).

    build/benchmarks/salting/skew_benchmark | tee /tmp/skew.txt
    python3 benchmarks/salting/plot_skew.py /tmp/skew.txt benchmarks/salting/skew.svg

One group per (Zipf exponent, partitions); bars for plain hashing, hashed salting and
saltproxy, on a log scale of max/mean partition load (1 is perfectly even).
"""
import math
import sys


def rows(path):
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 7 and cells[0][:1].isdigit() and "%" in cells[5]:
            yield cells[0], cells[1], float(cells[2]), float(cells[3]), float(cells[4])


def main():
    data = list(rows(sys.argv[1]))
    width, height, left, bottom, top = 900, 360, 60, 60, 30
    group = (width - left - 20) / len(data)
    bar = group / 4
    ymax = math.log10(200)

    def y(v):
        return top + (height - top - bottom) * (1 - math.log10(max(v, 1)) / ymax)

    colours = [("plain hashing", "#d62728"), ("hashed salting", "#ff7f0e"), ("saltproxy", "#2ca02c")]
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">' % (width, height),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="18" font-size="13">max/mean partition load (log scale; 1 = even)</text>' % left]
    for v in (1, 2, 5, 10, 20, 50, 100, 200):
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>' % (left, width - 20, y(v), y(v)))
        out.append('<text x="%d" y="%.1f" text-anchor="end">%g</text>' % (left - 5, y(v) + 4, v))
    for i, (s, p, plain, hashed, salted) in enumerate(data):
        x0 = left + i * group + bar / 2
        for j, v in enumerate((plain, hashed, salted)):
            out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %.3f</title></rect>'
                       % (x0 + j * bar, y(v), bar - 1, y(1) - y(v) + 1, colours[j][1], colours[j][0], v))
        out.append('<text x="%.1f" y="%d" text-anchor="middle">s=%s</text>' % (x0 + 1.5 * bar, height - bottom + 15, s))
        out.append('<text x="%.1f" y="%d" text-anchor="middle">P=%s</text>' % (x0 + 1.5 * bar, height - bottom + 28, p))
    for j, (name, colour) in enumerate(colours):
        out.append('<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>'
                   % (left + 160 * j, height - 18, colour, left + 160 * j + 14, height - 9, name))
    out.append("</svg>")
    open(sys.argv[2], "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
