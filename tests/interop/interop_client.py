#!/usr/bin/python3
"""The gRPC interop client cases (grpc's doc/interop-test-descriptions.md) on stock python
grpcio, to check a grpc.testing.TestService server against a real gRPC client.

    interop_client.py --server_host 127.0.0.1 --server_port N --test_case all|name[,name...]
                      [--stubs DIR] [--use_tls=false]

Prints "PASS name" or "FAIL name: reason" per case; exits 1 if any case failed. The
python stubs come from tests/gen_stubs.sh (package stdgrpc, default build/pygen).
"""
import argparse
import gzip
import os
import queue
import sys

import grpc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TS = "/grpc.testing.TestService/"
TIMEOUT = 30.0  # per call, so that a server that never answers fails the case, not the run
GZIP_MAGIC = b"\x1f\x8b"
SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
ECHO_INITIAL = ("x-grpc-test-echo-initial", "test_initial_metadata_value")
ECHO_TRAILING = ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab")

M = E = test_pb2_grpc = None  # set by load_stubs


class CaseFailed(Exception):
    pass


def check(cond, why):
    if not cond:
        raise CaseFailed(why)


def load_stubs(path):
    global M, E, test_pb2_grpc
    sys.path.insert(0, os.path.abspath(path))
    from stdgrpc.testing import empty_pb2, messages_pb2
    from stdgrpc.testing import test_pb2_grpc as tg

    M, E, test_pb2_grpc = messages_pb2, empty_pb2, tg


def zeros(n):
    return M.Payload(body=b"\0" * n)


def check_payload(payload, size, what="response"):
    check(len(payload.body) == size, f"{what} payload is {len(payload.body)} bytes, want {size}")
    check(payload.body == b"\0" * size, f"{what} payload is not all zeros")


def expect_error(code, fn, *args, **kw):
    """Runs fn (draining it if it returns a stream); returns the RpcError it must raise."""
    try:
        r = fn(*args, **kw)
        if hasattr(r, "__next__"):
            got = list(r)
            raise CaseFailed(f"call succeeded with {len(got)} responses, want {code.name}")
    except grpc.RpcError as e:
        check(e.code() == code, f"status {e.code().name} ({e.details()!r}), want {code.name}")
        return e
    raise CaseFailed(f"call succeeded, want {code.name}")


class Pipe:
    """A request stream that the test feeds one message at a time; None half-closes."""

    def __init__(self):
        self.q = queue.Queue()

    def __iter__(self):
        while True:
            item = self.q.get()
            if item is None:
                return
            yield item

    def add(self, msg):
        self.q.put(msg)

    def close(self):
        self.q.put(None)


def md_values(md, key):
    return [v for k, v in (md or ()) if k == key]


# ---------------------------------------------------------------------------------------
# The cases. Each takes the context and raises CaseFailed (or grpc.RpcError) to fail.


# With --use_tls: (root certificates, the name the server's certificate carries).
TLS = None


def make_channel(target, options):
    if TLS is None:
        return grpc.insecure_channel(target, options=options)
    roots, name = TLS
    return grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=roots),
                               options=list(options) + [("grpc.ssl_target_name_override", name)])


class Ctx:
    def __init__(self, target):
        self.target = target
        self.channel = make_channel(target, [("grpc.enable_http_proxy", 0)])
        self.stub = test_pb2_grpc.TestServiceStub(self.channel)

    def close(self):
        self.channel.close()


def large_request(**kw):
    return M.SimpleRequest(response_size=314159, payload=zeros(271828), **kw)


def empty_unary(ctx):
    resp = ctx.stub.EmptyCall(E.Empty(), timeout=TIMEOUT)
    check(isinstance(resp, E.Empty), f"response is {type(resp).__name__}, want Empty")


def large_unary(ctx):
    resp = ctx.stub.UnaryCall(large_request(), timeout=TIMEOUT)
    check_payload(resp.payload, 314159)


def client_compressed_unary(ctx):
    probe = large_request(expect_compressed=M.BoolValue(value=True))
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, ctx.stub.UnaryCall, probe, timeout=TIMEOUT)
    resp = ctx.stub.UnaryCall(probe, compression=grpc.Compression.Gzip, timeout=TIMEOUT)
    check_payload(resp.payload, 314159, "compressed call's")
    plain = large_request(expect_compressed=M.BoolValue(value=False))
    resp = ctx.stub.UnaryCall(plain, timeout=TIMEOUT)
    check_payload(resp.payload, 314159, "uncompressed call's")


def server_compressed_unary(ctx):
    # grpcio hides the message flags; with per-message decompression off, the channel hands
    # over the message bytes as they came, and a gzip stream (1f 8b) is then the proof of
    # a compressed message: a serialized SimpleResponse cannot start with 0x1f (wire
    # type 7 does not exist).
    ch = make_channel(
        ctx.target, [("grpc.enable_http_proxy", 0), ("grpc.per_message_decompression", 0)]
    )
    try:
        call = ch.unary_unary(
            TS + "UnaryCall",
            request_serializer=M.SimpleRequest.SerializeToString,
            response_deserializer=lambda b: b,
        )
        for compressed in (True, False):
            raw = call(large_request(response_compressed=M.BoolValue(value=compressed)), timeout=TIMEOUT)
            if compressed:
                check(raw[:2] == GZIP_MAGIC, "response_compressed=true but the message was not compressed")
                raw = gzip.decompress(raw)
            else:
                check(raw[:2] != GZIP_MAGIC, "response_compressed=false but the message was compressed")
            check_payload(M.SimpleResponse.FromString(raw).payload, 314159,
                          f"response_compressed={str(compressed).lower()}")
    finally:
        ch.close()


def client_streaming(ctx):
    reqs = [M.StreamingInputCallRequest(payload=zeros(n)) for n in (27182, 8, 1828, 45904)]
    resp = ctx.stub.StreamingInputCall(iter(reqs), timeout=TIMEOUT)
    check(resp.aggregated_payload_size == 74922,
          f"aggregated_payload_size {resp.aggregated_payload_size}, want 74922")


def server_streaming(ctx):
    sizes = [31415, 9, 2653, 58979]
    req = M.StreamingOutputCallRequest(response_parameters=[M.ResponseParameters(size=n) for n in sizes])
    call = ctx.stub.StreamingOutputCall(req, timeout=TIMEOUT)
    got = list(call)
    check(len(got) == 4, f"{len(got)} responses, want 4")
    for i, (r, n) in enumerate(zip(got, sizes)):
        check_payload(r.payload, n, f"response {i}")
    check(call.code() == grpc.StatusCode.OK, f"status {call.code().name}, want OK")


def ping_pong(ctx):
    pairs = [(27182, 31415), (8, 9), (1828, 2653), (45904, 58979)]
    pipe = Pipe()
    try:
        call = ctx.stub.FullDuplexCall(iter(pipe), timeout=TIMEOUT)
        for i, (req_size, resp_size) in enumerate(pairs):
            pipe.add(M.StreamingOutputCallRequest(
                response_parameters=[M.ResponseParameters(size=resp_size)], payload=zeros(req_size)))
            check_payload(next(call).payload, resp_size, f"response {i}")
        pipe.close()
        rest = list(call)
        check(not rest, f"{len(rest)} responses after the fourth, want none")
        check(call.code() == grpc.StatusCode.OK, f"status {call.code().name}, want OK")
    finally:
        pipe.close()


def empty_stream(ctx):
    call = ctx.stub.FullDuplexCall(iter([]), timeout=TIMEOUT)
    got = list(call)
    check(not got, f"{len(got)} responses, want none")
    check(call.code() == grpc.StatusCode.OK, f"status {call.code().name}, want OK")


def cancel_after_begin(ctx):
    pipe = Pipe()
    try:
        fut = ctx.stub.StreamingInputCall.future(iter(pipe), timeout=TIMEOUT)
        fut.cancel()
        check(fut.cancelled(), "the call did not end as cancelled")
        check(fut.code() == grpc.StatusCode.CANCELLED, f"status {fut.code().name}, want CANCELLED")
    finally:
        pipe.close()


def cancel_after_first_response(ctx):
    pipe = Pipe()
    try:
        call = ctx.stub.FullDuplexCall(iter(pipe), timeout=TIMEOUT)
        pipe.add(M.StreamingOutputCallRequest(
            response_parameters=[M.ResponseParameters(size=31415)], payload=zeros(27182)))
        check_payload(next(call).payload, 31415)
        call.cancel()
        check(call.code() == grpc.StatusCode.CANCELLED, f"status {call.code().name}, want CANCELLED")
        try:
            next(call)
            raise CaseFailed("a response arrived after the cancel")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.CANCELLED, f"status {e.code().name}, want CANCELLED")
    finally:
        pipe.close()


def timeout_on_sleeping_server(ctx):
    pipe = Pipe()
    try:
        call = ctx.stub.FullDuplexCall(iter(pipe), timeout=0.001)
        pipe.add(M.StreamingOutputCallRequest(payload=zeros(27182)))
        try:
            next(call)
            raise CaseFailed("a response arrived, want DEADLINE_EXCEEDED")
        except StopIteration:
            raise CaseFailed(f"the call ended with {call.code().name}, want DEADLINE_EXCEEDED")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.DEADLINE_EXCEEDED,
                  f"status {e.code().name}, want DEADLINE_EXCEEDED")
    finally:
        pipe.close()


def check_echoed(call, what):
    got = md_values(call.initial_metadata(), ECHO_INITIAL[0])
    check(got == [ECHO_INITIAL[1]], f"{what}: initial metadata {ECHO_INITIAL[0]} = {got!r}")
    got = md_values(call.trailing_metadata(), ECHO_TRAILING[0])
    check(got == [ECHO_TRAILING[1]], f"{what}: trailing metadata {ECHO_TRAILING[0]} = {got!r}")


def custom_metadata(ctx):
    md = (ECHO_INITIAL, ECHO_TRAILING)
    resp, call = ctx.stub.UnaryCall.with_call(large_request(), metadata=md, timeout=TIMEOUT)
    check_payload(resp.payload, 314159, "UnaryCall")
    check_echoed(call, "UnaryCall")

    req = M.StreamingOutputCallRequest(response_parameters=[M.ResponseParameters(size=314159)],
                                       payload=zeros(271828))
    call = ctx.stub.FullDuplexCall(iter([req]), metadata=md, timeout=TIMEOUT)
    got = list(call)
    check(len(got) == 1, f"FullDuplexCall: {len(got)} responses, want 1")
    check_payload(got[0].payload, 314159, "FullDuplexCall")
    check(call.code() == grpc.StatusCode.OK, f"FullDuplexCall: status {call.code().name}, want OK")
    check_echoed(call, "FullDuplexCall")


def _echo_status(ctx, message, duplex):
    status = M.EchoStatus(code=2, message=message)
    e = expect_error(grpc.StatusCode.UNKNOWN, ctx.stub.UnaryCall,
                     M.SimpleRequest(response_status=status), timeout=TIMEOUT)
    check(e.details() == message, f"UnaryCall: message {e.details()!r}, want {message!r}")
    if duplex:
        e = expect_error(grpc.StatusCode.UNKNOWN, ctx.stub.FullDuplexCall,
                         iter([M.StreamingOutputCallRequest(response_status=status)]), timeout=TIMEOUT)
        check(e.details() == message, f"FullDuplexCall: message {e.details()!r}, want {message!r}")


def status_code_and_message(ctx):
    _echo_status(ctx, "test status message", duplex=True)


def special_status_message(ctx):
    _echo_status(ctx, SPECIAL_MESSAGE, duplex=False)


def unimplemented_method(ctx):
    expect_error(grpc.StatusCode.UNIMPLEMENTED, ctx.stub.UnimplementedCall, E.Empty(), timeout=TIMEOUT)


def unimplemented_service(ctx):
    stub = test_pb2_grpc.UnimplementedServiceStub(ctx.channel)
    expect_error(grpc.StatusCode.UNIMPLEMENTED, stub.UnimplementedCall, E.Empty(), timeout=TIMEOUT)


CASES = [
    empty_unary,
    large_unary,
    client_compressed_unary,
    server_compressed_unary,
    client_streaming,
    server_streaming,
    ping_pong,
    empty_stream,
    cancel_after_begin,
    cancel_after_first_response,
    timeout_on_sleeping_server,
    custom_metadata,
    status_code_and_message,
    special_status_message,
    unimplemented_method,
    unimplemented_service,
]


def one_line(s):
    return " ".join(str(s).split())


def run_case(ctx, fn):
    try:
        fn(ctx)
    except CaseFailed as e:
        return str(e)
    except grpc.RpcError as e:
        return f"unexpected status {e.code().name}: {e.details()!r}"
    except Exception as e:  # a broken case is reported like a failure, and the run goes on
        return f"{type(e).__name__}: {e}"
    return None


def parse_bool(s):
    v = s.lower()
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {s}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server_host", default="127.0.0.1")
    ap.add_argument("--server_port", type=int, required=True)
    ap.add_argument("--test_case", default="all")
    ap.add_argument("--use_tls", type=parse_bool, default=False)
    ap.add_argument("--ca_file", help="with --use_tls: the CA of the server's certificate")
    ap.add_argument("--server_host_override", default="localhost",
                    help="with --use_tls: the name the server's certificate carries")
    ap.add_argument("--stubs", default=os.path.join(ROOT, "build", "pygen"))
    args = ap.parse_args()
    if args.use_tls:
        if not args.ca_file:
            ap.error("--use_tls=true needs --ca_file (the stock clients' embedded test CA is not here)")
        global TLS
        with open(args.ca_file, "rb") as f:
            TLS = (f.read(), args.server_host_override)
    by_name = {fn.__name__: fn for fn in CASES}
    if args.test_case == "all":
        cases = CASES
    else:
        names = [n for n in args.test_case.split(",") if n]
        unknown = [n for n in names if n not in by_name]
        if unknown or not names:
            ap.error(f"unknown test case(s) {','.join(unknown)}; known: {','.join(by_name)}")
        cases = [by_name[n] for n in names]
    load_stubs(args.stubs)

    host = args.server_host
    target = f"[{host}]:{args.server_port}" if ":" in host else f"{host}:{args.server_port}"
    ctx = Ctx(target)
    failed = 0
    try:
        for fn in cases:
            why = run_case(ctx, fn)
            if why is None:
                print(f"PASS {fn.__name__}", flush=True)
            else:
                failed += 1
                print(f"FAIL {fn.__name__}: {one_line(why)}", flush=True)
    finally:
        ctx.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
