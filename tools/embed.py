#!/usr/bin/env python3
"""Writes a C file holding the bytes of a file: embed.py INPUT OUTPUT SYMBOL."""
import sys

src, out, sym = sys.argv[1:4]
data = open(src, 'rb').read()
with open(out, 'w') as f:
    f.write('#include <stddef.h>\n#include <stdint.h>\n')
    f.write(f'const uint8_t {sym}[] = {{\n')
    for i in range(0, len(data), 16):
        f.write(''.join(f'{b},' for b in data[i:i + 16]) + '\n')
    f.write('};\n')
    f.write(f'const size_t {sym}_len = {len(data)};\n')
