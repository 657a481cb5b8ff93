#!/usr/bin/python3
"""Writes the seed corpora of the connection-level harnesses with python3-h2, so that the
fuzzers start from well-formed HTTP/2 + gRPC traffic. Run: fuzz/make_seeds.py"""
import gzip
import os
import struct

import h2.config
import h2.connection

HERE = os.path.dirname(os.path.abspath(__file__))
PREFACE = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'


def grpc_msg(payload, compressed=False):
    return struct.pack('>BI', 1 if compressed else 0, len(payload)) + payload


def client():
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    return c


def request(c, sid, path, extra=()):
    c.send_headers(sid, [(':method', 'POST'), (':scheme', 'http'), (':path', path),
                         (':authority', 'fuzz'), ('content-type', 'application/grpc'),
                         ('te', 'trailers'), ('grpc-accept-encoding', 'gzip')] + list(extra))


def write(corpus, name, data, piece=0):
    d = os.path.join(HERE, 'corpus', corpus)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(bytes([piece]) + data)


def server_seeds():
    c = client()
    request(c, 1, '/fuzz.Test/Unary', [('x-echo-bin', 'AAEC'), ('grpc-timeout', '5S')])
    c.send_data(1, grpc_msg(b'hello'), end_stream=True)
    write('fuzz_server_conn', 'unary', c.data_to_send()[len(PREFACE):], 255)

    c = client()
    request(c, 1, '/fuzz.Test/Bidi', [('grpc-encoding', 'gzip')])
    body = grpc_msg(gzip.compress(b'x' * 100), True) + grpc_msg(b'abc')
    c.send_data(1, body[:7])
    c.send_data(1, body[7:], end_stream=True)
    request(c, 3, '/fuzz.Test/ServerStream')
    c.send_data(3, grpc_msg(b'ss'), end_stream=True)
    write('fuzz_server_conn', 'bidi_gzip', c.data_to_send()[len(PREFACE):], 3)

    c = client()
    request(c, 1, '/grpc.health.v1.Health/Check')
    c.send_data(1, grpc_msg(b''), end_stream=True)
    request(c, 3, '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo')
    c.send_data(3, grpc_msg(b'\x3a\x00') + grpc_msg(b'\x22\x13collector.Collection'))
    c.reset_stream(3)
    write('fuzz_server_conn', 'health_reflection', c.data_to_send()[len(PREFACE):], 255)

    c = client()
    request(c, 1, '/fuzz.Test/ClientStream')
    c.send_data(1, grpc_msg(b'a') + grpc_msg(b'b') + b'\x00\x00\x00')
    c.end_stream(1)
    request(c, 3, '/no.Such/Method')
    c.end_stream(3)
    c.send_headers(5, [(':method', 'POST'), (':scheme', 'http'), (':path', '/fuzz.Test/Unary'),
                       (':authority', 'x'), ('content-type', 'text/plain')], end_stream=True)
    c.ping(b'12345678')
    write('fuzz_server_conn', 'errors', c.data_to_send()[len(PREFACE):], 255)


def client_seeds():
    for name, status, compressed, extra in [
            ('ok', '0', False, []), ('gzip', '0', True, [('x-t-bin', 'AAE=')]),
            ('error', '5', False, [('grpc-message', 'not%20found')])]:
        # A server that saw the request on stream 1 answers it; its bytes are the input.
        cl = client()
        request(cl, 1, '/fuzz.Test/Call')
        sv = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        sv.initiate_connection()
        sv.receive_data(cl.data_to_send())
        hdrs = [(':status', '200'), ('content-type', 'application/grpc')]
        if compressed:
            hdrs.append(('grpc-encoding', 'gzip'))
        sv.send_headers(1, hdrs)
        payload = gzip.compress(b'resp') if compressed else b'resp'
        sv.send_data(1, grpc_msg(payload, compressed))
        sv.send_headers(1, [('grpc-status', status)] + extra, end_stream=True)
        write('fuzz_client_response', name, sv.data_to_send(), 255)


def frames_seeds():
    """fuzz_frames reads ops, not bytes: HEADERS (op < 80: shape, extra, split),
    a message (80..169: stream, flags, cut, length, payload), control frames (170..:
    kind, a, b). Shape bit 7 ends the stream; bits 1..4 pick the path."""
    def headers(path_index, end=False, extra=0, split=0):
        return bytes([0, (path_index << 1) | (0x80 if end else 0), extra, split])

    def message(payload, stream=0, flags=4, cut=63):
        return bytes([100, stream, flags, cut, len(payload)]) + payload

    def control(kind, a, b):
        return bytes([200, kind, a, b])

    seeds = {
        'unary': headers(0) + message(b'hello'),
        'health': headers(4) + message(b''),
        'bidi': headers(2) + message(b'a', flags=0) + message(b'b', cut=1) ,
        'reflection': headers(6) + message(b'\x3a\x00'),
        'gzip_bad': headers(0, extra=0x08) + message(b'\x1f\x8b', flags=5),
        'continuations': headers(4, split=0x0c) + message(b''),
        'reset': headers(5) + message(b'') + control(0, 4, 8),
        'controls': b''.join(control(k, 4, 7) for k in range(9)),
        'timeouts': headers(1, extra=0x07) + message(b'x'),
    }
    for name, data in seeds.items():
        d = os.path.join(HERE, 'corpus', 'fuzz_frames')
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, name), 'wb') as f:
            f.write(data + bytes([3]))


if __name__ == '__main__':
    server_seeds()
    client_seeds()
    frames_seeds()
