#!/usr/bin/env python3
"""Small document fixtures for the loader tests: a two-page PDF written from
raw PDF syntax (standard Helvetica font, so any PDF reader extracts the same
text), and a corrupt PDF (the same file cut in half).

Run by hand (no dependencies):
    python3 tools/gen_doc_fixtures.py tests/data/docs
"""
import os
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/docs"
os.makedirs(out, exist_ok=True)
pages = [["Quarterly maintenance report", "The centrifuge rotor was replaced on 3 May."],
         ["Page two: calibration", "The pipettes were calibrated to within 0.5 percent."]]
objs = ["<< /Type /Catalog /Pages 2 0 R >>", None, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
kids = []
for lines in pages:
    stream = "BT /F1 14 Tf 72 720 Td " + " ".join("(%s) Tj 0 -24 Td" % l for l in lines) + " ET"
    objs.append("<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    content = len(objs)
    objs.append("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                "/Resources << /Font << /F1 3 0 R >> >> >>" % content)
    kids.append("%d 0 R" % len(objs))
objs[1] = "<< /Type /Pages /Kids [%s] /Count %d >>" % (" ".join(kids), len(kids))
pdf = b"%PDF-1.4\n"
offsets = []
for i, o in enumerate(objs):
    offsets.append(len(pdf))
    pdf += ("%d 0 obj\n%s\nendobj\n" % (i + 1, o)).encode("latin-1")
xref = len(pdf)
pdf += ("xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)).encode()
pdf += "".join("%010d 00000 n \n" % off for off in offsets).encode()
pdf += ("trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)).encode()
open(os.path.join(out, "report.pdf"), "wb").write(pdf)
open(os.path.join(out, "corrupt.pdf"), "wb").write(pdf[: len(pdf) // 3])
