#!/usr/bin/python3
"""A stock gRPC server (python grpcio) implementing grpc.testing.TestService (the server
side of the interop spec), so that this project's own client (c_client) and the interop
clients are checked against stock gRPC as well as against our server. Per-message
decompression is off so that handlers see whether a request arrived compressed (gzip
magic) and can answer expect_compressed.
Usage: py_server.py --port 0 [--stubs DIR]; prints 'listening on 127.0.0.1:PORT'."""
import argparse
import gzip
import os
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.environ.get("PYGEN_DIR", os.path.join(ROOT, "build", "pygen")))
from stdgrpc.testing import empty_pb2 as E  # noqa: E402
from stdgrpc.testing import messages_pb2 as M  # noqa: E402

ECHO_I = "x-grpc-test-echo-initial"
ECHO_T = "x-grpc-test-echo-trailing-bin"


class Req:
    def __init__(self, msg, compressed):
        self.msg = msg
        self.compressed = compressed


def deser(cls):
    def f(b):
        c = b[:2] == b"\x1f\x8b"
        return Req(cls.FromString(gzip.decompress(b) if c else b), c)
    return f


def echo(ctx):
    md = dict(ctx.invocation_metadata())
    if ECHO_I in md:
        ctx.send_initial_metadata(((ECHO_I, md[ECHO_I]),))
    if ECHO_T in md:
        ctx.set_trailing_metadata(((ECHO_T, md[ECHO_T]),))


def expect(req, field, ctx):
    m = req.msg
    if m.HasField(field) and getattr(m, field).value != req.compressed:
        ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "compression not as expected")


def code_of(n):
    for c in grpc.StatusCode:
        if c.value[0] == n:
            return c
    return grpc.StatusCode.UNKNOWN


def payload(n):
    return M.Payload(body=b"\0" * n)


def empty_call(req, ctx):
    echo(ctx)
    return E.Empty()


def unary_call(req, ctx):
    echo(ctx)
    expect(req, "expect_compressed", ctx)
    m = req.msg
    if m.HasField("response_status"):
        ctx.abort(code_of(m.response_status.code), m.response_status.message)
    ctx.set_compression(grpc.Compression.Gzip if m.response_compressed.value else grpc.Compression.NoCompression)
    return M.SimpleResponse(payload=payload(m.response_size))


def cacheable(req, ctx):
    echo(ctx)
    ctx.send_initial_metadata((("cache-control", "max-age=60, public"),))
    return M.SimpleResponse(payload=M.Payload(body=str(time.time_ns()).encode()))


def streaming_input(it, ctx):
    echo(ctx)
    total = 0
    for r in it:
        expect(r, "expect_compressed", ctx)
        total += len(r.msg.payload.body)
    return M.StreamingInputCallResponse(aggregated_payload_size=total)


def respond(m, ctx):
    for p in m.response_parameters:
        if p.interval_us:
            time.sleep(p.interval_us / 1e6)
        yield M.StreamingOutputCallResponse(payload=payload(p.size))
    if m.HasField("response_status"):
        ctx.abort(code_of(m.response_status.code), m.response_status.message)


def streaming_output(req, ctx):
    echo(ctx)
    yield from respond(req.msg, ctx)


def full_duplex(it, ctx):
    echo(ctx)
    for r in it:
        yield from respond(r.msg, ctx)


def half_duplex(it, ctx):
    echo(ctx)
    reqs = [r.msg for r in it]
    for m in reqs:
        yield from respond(m, ctx)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    s = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                    options=[("grpc.per_message_decompression", 0)])
    SOC = M.StreamingOutputCallResponse.SerializeToString
    SOR = M.StreamingOutputCallRequest
    h = grpc.method_handlers_generic_handler("grpc.testing.TestService", {
        "EmptyCall": grpc.unary_unary_rpc_method_handler(
            empty_call, deser(E.Empty), E.Empty.SerializeToString),
        "UnaryCall": grpc.unary_unary_rpc_method_handler(
            unary_call, deser(M.SimpleRequest), M.SimpleResponse.SerializeToString),
        "CacheableUnaryCall": grpc.unary_unary_rpc_method_handler(
            cacheable, deser(M.SimpleRequest), M.SimpleResponse.SerializeToString),
        "StreamingInputCall": grpc.stream_unary_rpc_method_handler(
            streaming_input, deser(M.StreamingInputCallRequest),
            M.StreamingInputCallResponse.SerializeToString),
        "StreamingOutputCall": grpc.unary_stream_rpc_method_handler(streaming_output, deser(SOR), SOC),
        "FullDuplexCall": grpc.stream_stream_rpc_method_handler(full_duplex, deser(SOR), SOC),
        "HalfDuplexCall": grpc.stream_stream_rpc_method_handler(half_duplex, deser(SOR), SOC),
    })
    s.add_generic_rpc_handlers((h,))
    port = s.add_insecure_port("127.0.0.1:%d" % args.port)
    s.start()
    print("listening on 127.0.0.1:%d" % port, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    s.stop(1).wait()


if __name__ == "__main__":
    main()
