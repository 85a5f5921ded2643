#!/usr/bin/env python3
"""Checks a rendered f1.svg (PNG from rsvg-convert) as a person would look at it:
the image is not blank, it has exactly len(VALUES) coloured bars standing on the
axis, each as tall as its value on the 0..1 axis (within 3 pixels), each with
text under it (its label) and a whisker above or across its top.

usage: check_chart.py FILE.png V1 V2 ...   (exit 0 if all holds; prints what it saw)
Geometry of src/rag/evaluate.c's chart: 640x400, plot from y=50 to y=340, x 60..620.
Decodes the PNG with the standard library (8-bit RGB/RGBA, non-interlaced).
"""
import struct
import sys
import zlib


def read_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, "unsupported PNG"
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(h):
        f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1: line[x] = (line[x] + a) & 255
            elif f == 2: line[x] = (line[x] + b) & 255
            elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(w)])
        prev = line
    return w, h, rows


def coloured(p):  # a bar fill: saturated, unlike white, grey grid lines, black text
    return max(p) - min(p) > 60


def main():
    path, values = sys.argv[1], [float(v) for v in sys.argv[2:]]
    w, h, px = read_png(path)
    ok = True
    if (w, h) != (640, 400):
        print("size %dx%d, expected 640x400" % (w, h)); return 1
    if all(p == px[0][0] for row in px for p in row):
        print("blank image"); return 1
    top, bottom = 50, 340
    y = bottom - 3
    runs, x = [], 0
    while x < w:
        if coloured(px[y][x]):
            s = x
            while x < w and coloured(px[y][x]): x += 1
            runs.append((s, x))
        x += 1
    print("bars at x:", runs)
    if len(runs) != len(values):
        print("found %d bars, expected %d" % (len(runs), len(values))); return 1
    for (s, e), v in zip(runs, values):
        cx = (s + e) // 2
        colour = px[y][s + 1]
        yy = y
        while yy > 0 and px[yy][s + 1] == colour: yy -= 1
        height = bottom - (yy + 1)
        want = v * (bottom - top)
        label = sum(1 for yl in range(bottom + 8, bottom + 28) for xl in range(cx - 30, cx + 30) if max(px[yl][xl]) < 100)
        whisker = any(max(px[yl][cx]) < 60 for yl in range(top - 10, bottom))
        print("bar x %d-%d: height %d px (value %.3f -> %.1f px), label pixels %d, whisker %s" %
              (s, e, height, v, want, label, whisker))
        if abs(height - want) > 3 or label < 20 or not whisker: ok = False
    return 0 if ok else 1


sys.exit(main())
