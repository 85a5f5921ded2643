#!/usr/bin/env python3
"""A GGUF file written by the independent `gguf` Python package, holding
every value type, nested arrays, UTF-8 strings and tensors of several types.

Run by hand, never by CI:
    .venv/bin/pip install gguf numpy
    .venv/bin/python tools/gen_gguf_ref.py tests/data/gguf/ref_writer.gguf

tests/test_gguf.c reads it and checks each value below (the inputs here),
then re-writes it with our writer and compares the bytes.
"""
import sys

import numpy as np
import gguf

out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/gguf/ref_writer.gguf"
w = gguf.GGUFWriter(out, "testarch")
w.add_uint8("t.u8", 200)
w.add_int8("t.i8", -100)
w.add_uint16("t.u16", 60000)
w.add_int16("t.i16", -30000)
w.add_uint32("t.u32", 4000000000)
w.add_int32("t.i32", -2000000000)
w.add_float32("t.f32", 3.25)
w.add_bool("t.bool", True)
w.add_string("t.str", "héllo wörld ✓")
w.add_uint64("t.u64", 18000000000000000000)
w.add_int64("t.i64", -9000000000000000000)
w.add_float64("t.f64", -1.0e300)
w.add_array("t.arr_i32", [1, -2, 3])
w.add_array("t.arr_str", ["a", "", "ünï"])
w.add_array("t.arr_nested", [[1, 2], [3]])
w.add_array("t.arr_f32", [0.5, -1.5])
f32 = (np.arange(64, dtype=np.float32) - 32) / 8
w.add_tensor("w.f32", f32.reshape(4, 16))
w.add_tensor("w.f16", f32.astype(np.float16).reshape(2, 32))
q8 = gguf.quants.quantize(f32.reshape(2, 32), gguf.GGMLQuantizationType.Q8_0)
w.add_tensor("w.q8_0", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
