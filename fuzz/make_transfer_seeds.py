#!/usr/bin/python3
"""Writes the seed corpus of fuzz_transfer_rx: transfers as PushCollection and Fetch feed the
receiver (a manifest whose hashes match the chunks that follow, an empty file among them),
and the refusals (a chunk first, metadata twice, bytes beyond the total, a flipped byte, a
stream cut short, a full disk). Record format: fuzz/fuzz_transfer_rx.c.
Run: fuzz/make_transfer_seeds.py"""
import base64
import hashlib
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'corpus', 'fuzz_transfer_rx')

DB = b'SQLite format 3\0' + bytes(range(256)) * 3
FILES = [('a.txt', b'alpha'), ('dir/sub/b.bin', bytes(range(200))), ('empty', b'')]


def varint(n):
    out = b''
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wt, payload):
    key = varint(num << 3 | wt)
    if wt == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def manifest(files=FILES, db=DB, records=3):
    return json.dumps({
        'format': 1, 'backup_id': 'transfer', 'namespace': 'default', 'collection': 'c1',
        'timestamp_us': 1733600000000000, 'records': records,
        'database': {'path': 'records.db', 'size': len(db), 'sha256': hashlib.sha256(db).hexdigest()},
        'include_files': True, 'file_count': len(files), 'file_bytes': sum(len(d) for _, d in files),
        'files': [{'path': p, 'size': len(d), 'sha256': hashlib.sha256(d).hexdigest()} for p, d in files],
        'definition': base64.b64encode(b'\n\x07default\x12\x02c1').decode(),
        'type_namespace': '', 'type_files': [],
    }).encode()


def meta_msg(man, total, records=3, files=len(FILES)):
    md = field(5, 0, total) + field(7, 0, records) + field(8, 0, files) + field(16, 2, man)
    return field(1, 2, md)


def rec(kind, payload=b''):
    return bytes([kind]) + struct.pack('<H', len(payload)) + payload


def chunks(data, size, as_message=False):
    out = b''
    for i in range(0, len(data), size):
        c = data[i:i + size]
        out += rec(0, field(2, 2, c)) if as_message else rec(1, c)
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    man = manifest()
    data = DB + b''.join(d for _, d in FILES)
    meta = rec(0, meta_msg(man, len(data)))
    flipped = bytearray(data)
    flipped[len(DB) + 1] ^= 1
    seeds = {
        'whole_raw_chunks': meta + chunks(data, 100) + rec(2),
        'whole_messages': meta + chunks(data, 333, as_message=True) + rec(2),
        'one_chunk': meta + chunks(data, 4096) + rec(2),
        'chunk_first': chunks(data, 100) + meta + rec(2),
        'meta_twice': meta + meta + chunks(data, 100) + rec(2),
        'beyond_total': meta + chunks(data + b'x', 100) + rec(2),
        'flipped_byte': meta + chunks(bytes(flipped), 100) + rec(2),
        'cut_short': meta + chunks(data[:-3], 100) + rec(2),
        'no_meta_end': rec(2),
        'wrong_total': rec(0, meta_msg(man, len(data) + 1)) + chunks(data, 100) + rec(2),
        'wrong_count': rec(0, meta_msg(man, len(data), records=4)) + chunks(data, 100) + rec(2),
        'no_manifest': rec(0, meta_msg(b'', len(data))) + chunks(data, 100) + rec(2),
        'disk_full': meta + chunks(data[:500], 100) + rec(3) + chunks(data[500:], 100) + rec(2),
        'disk_full_open': rec(3) + meta + chunks(data, 100) + rec(2),
        'no_files': rec(0, meta_msg(manifest(files=[]), len(DB), files=0)) + chunks(DB, 200) + rec(2),
    }
    for name, blob in seeds.items():
        with open(os.path.join(OUT, name), 'wb') as f:
            f.write(blob)


if __name__ == '__main__':
    main()
