"""The protobuf <-> JSON transcoder against protobuf's own (python json_format), through the
tests/unit/pbjson command: many random messages of many types (grpc.testing, collector,
well-known types, and every field shape in tests/e2e/protos), both field naming modes,
both directions.

pbjson comes from env PBJSON_BIN, else from the build that COLLECTOR_BIN is in
(build/tests/unit/pbjson by default). A missing binary fails the test."""

import base64
import json
import math
import os
import random
import struct
import subprocess
from pathlib import Path

import pytest
from google.protobuf import (any_pb2, descriptor, descriptor_pb2, descriptor_pool,
                             duration_pb2, empty_pb2, field_mask_pb2, json_format,
                             message_factory, struct_pb2, timestamp_pb2, wrappers_pb2)

from collector import (collection_pb2, collection_repo_pb2, collection_server_pb2, common_pb2,
                       console_pb2, registry_pb2, worker_pb2)
from conftest import COLLECTOR_BIN, REPO
from stdgrpc.testing import messages_pb2

PBJSON_BIN = Path(os.environ.get("PBJSON_BIN", COLLECTOR_BIN.parent / "tests" / "unit" / "pbjson"))
PROTOS = REPO / "tests" / "e2e" / "protos"
NS = "xt"
FD = descriptor.FieldDescriptor

TS_MIN, TS_MAX = -62135596800, 253402300799
DUR_MAX = 315576000000


@pytest.fixture(scope="module")
def desc_set(tmp_path_factory):
    """The test protos compiled, added to python's default pool; the set's path."""
    out = tmp_path_factory.mktemp("desc") / "xtest.desc"
    subprocess.run(["protoc", "-I", str(PROTOS), "-I", "/usr/include", "--include_imports",
                    f"--descriptor_set_out={out}", "xtest/all.proto", "xtest/legacy.proto"],
                   check=True)
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.Default()
    for f in fds.file:
        if f.name.startswith("xtest/"):
            try:
                pool.FindFileByName(f.name)
            except KeyError:
                pool.Add(f)
    return out


def msg_class(full_name):
    d = descriptor_pool.Default().FindMessageTypeByName(full_name)
    return message_factory.MessageFactory(descriptor_pool.Default()).GetPrototype(d)


class Pbjson:
    """One pbjson --batch process: requests in, one answer line each."""

    def __init__(self, desc_set):
        if not PBJSON_BIN.exists():
            pytest.fail(f"{PBJSON_BIN} does not exist: build it first (ninja -C build)")
        self.argv = [str(PBJSON_BIN), "--batch", "-d", str(desc_set), "-n", NS]

    def run(self, requests):
        """requests: (mode, type, bytes); returns [(ok, text)] in order."""
        lines = [f"{m} {t} {base64.b64encode(b).decode()}\n" for m, t, b in requests]
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1")
        p = subprocess.run(self.argv, input="".join(lines).encode(), capture_output=True,
                           timeout=300, env=env)
        assert p.returncode == 0, p.stderr.decode(errors="replace")
        assert b"runtime error" not in p.stderr and b"Sanitizer" not in p.stderr, p.stderr
        out = p.stdout.decode().split("\n")[:-1]
        assert len(out) == len(requests), p.stderr.decode(errors="replace")
        res = []
        for line in out:
            status, _, text = line.partition(" ")
            res.append((status == "ok", text))
        return res


@pytest.fixture(scope="module")
def pbjson(desc_set):
    return Pbjson(desc_set)


# ---- random messages ----

def rand_double(rng):
    r = rng.random()
    if r < 0.3:
        return rng.choice([0.0, -0.0, 1.0, -1.5, 0.1, 1e300, -1e-300, 5e-324, 2.0**53 + 1,
                           1e16, 123456789.125, math.inf, -math.inf, math.nan])
    if r < 0.6:
        return struct.unpack("<d", rng.randbytes(8))[0]
    return rng.uniform(-1e6, 1e6)


def rand_float(rng):
    r = rng.random()
    if r < 0.3:
        return rng.choice([0.0, -0.0, 0.1, 3.4028234663852886e38, 1.401298464324817e-45,
                           math.inf, -math.inf, math.nan, 16777217.0])
    return struct.unpack("<f", rng.randbytes(4))[0]


def rand_int(rng, lo, hi):
    r = rng.random()
    if r < 0.3:
        return rng.choice([lo, hi, 0, 1, -1 if lo < 0 else 2, lo + 1, hi - 1])
    if r < 0.6:
        return rng.randint(-1000, 1000) if lo < 0 else rng.randint(0, 1000)
    return rng.randint(lo, hi)


SPECIAL_CHARS = ['"', "\\", "/", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "😀", "\u2028",
                 "中", "\U0010ffff", "\ufeff", " "]


def rand_string(rng, maxlen=12):
    out = []
    for _ in range(rng.randint(0, maxlen)):
        r = rng.random()
        if r < 0.5:
            out.append(chr(rng.randint(0x20, 0x7e)))
        elif r < 0.8:
            out.append(rng.choice(SPECIAL_CHARS))
        else:
            cp = rng.randint(0x80, 0x10FFFF)
            out.append(chr(cp if not 0xD800 <= cp <= 0xDFFF else 0x41))
    return "".join(out)


def rand_path(rng):
    words = ["a", "b_c", "foo", "bar_baz", "x1", "q_r_s"]
    return ".".join(rng.choice(words) for _ in range(rng.randint(1, 3)))


def rand_json_value(rng, depth):
    kinds = ["null", "num", "str", "bool"] + (["struct", "list"] if depth < 3 else [])
    k = rng.choice(kinds)
    if k == "null":
        return None
    if k == "num":
        return rng.choice([0, 1.5, -2, 1e300, rng.uniform(-1e9, 1e9), 2**53])
    if k == "str":
        return rand_string(rng)
    if k == "bool":
        return rng.random() < 0.5
    if k == "struct":
        return {rand_string(rng, 5): rand_json_value(rng, depth + 1)
                for _ in range(rng.randint(0, 3))}
    return [rand_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]


ANY_TYPES = ["xtest.Inner", "collector.Status", "google.protobuf.Timestamp",
             "google.protobuf.Duration", "google.protobuf.Struct", "google.protobuf.Value",
             "google.protobuf.Int64Value", "google.protobuf.Empty", "google.protobuf.FieldMask",
             "google.protobuf.Any", "grpc.testing.SimpleRequest"]


def fill_wkt(rng, msg, depth):
    """Gives a well-known type a valid random value; False if msg is not one."""
    name = msg.DESCRIPTOR.full_name
    if name == "google.protobuf.Timestamp":
        msg.seconds = rng.choice([TS_MIN, TS_MAX, 0, -1, rng.randint(TS_MIN, TS_MAX)])
        msg.nanos = rng.choice([0, 999999999, 1000000 * rng.randint(0, 999),
                                1000 * rng.randint(0, 999999), rng.randint(0, 999999999)])
    elif name == "google.protobuf.Duration":
        s = rng.choice([0, 1, -1, DUR_MAX, -DUR_MAX, rng.randint(-DUR_MAX, DUR_MAX)])
        n = rng.choice([0, 500000000, rng.randint(0, 999999999)])
        msg.seconds = s
        msg.nanos = -n if s < 0 or (s == 0 and rng.random() < 0.5) else n
    elif name == "google.protobuf.FieldMask":
        msg.paths.extend(rand_path(rng) for _ in range(rng.randint(0, 3)))
    elif name == "google.protobuf.Struct":
        json_format.ParseDict({rand_string(rng, 5): rand_json_value(rng, 1)
                               for _ in range(rng.randint(0, 4))}, msg)
    elif name == "google.protobuf.Value":
        json_format.ParseDict(rand_json_value(rng, 1), msg)
    elif name == "google.protobuf.ListValue":
        json_format.ParseDict([rand_json_value(rng, 1) for _ in range(rng.randint(0, 4))], msg)
    elif name == "google.protobuf.Any":
        if rng.random() < 0.9 and depth < 4:
            inner = msg_class(rng.choice(ANY_TYPES))()
            fill(rng, inner, depth + 1)
            msg.Pack(inner)
    elif msg.DESCRIPTOR.file.name == "google/protobuf/wrappers.proto":
        fill(rng, msg, depth, wkt=False)
    else:
        return False
    return True


def rand_scalar(rng, f):
    t = f.type
    if t == FD.TYPE_DOUBLE:
        return rand_double(rng)
    if t == FD.TYPE_FLOAT:
        return rand_float(rng)
    if t in (FD.TYPE_INT64, FD.TYPE_SFIXED64, FD.TYPE_SINT64):
        return rand_int(rng, -2**63, 2**63 - 1)
    if t in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return rand_int(rng, 0, 2**64 - 1)
    if t in (FD.TYPE_INT32, FD.TYPE_SFIXED32, FD.TYPE_SINT32):
        return rand_int(rng, -2**31, 2**31 - 1)
    if t in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
        return rand_int(rng, 0, 2**32 - 1)
    if t == FD.TYPE_BOOL:
        return rng.random() < 0.5
    if t == FD.TYPE_STRING:
        return rand_string(rng)
    if t == FD.TYPE_BYTES:
        return rng.randbytes(rng.randint(0, 10))
    if t == FD.TYPE_ENUM:
        if f.enum_type.full_name == "google.protobuf.NullValue":
            return 0
        values = [v.number for v in f.enum_type.values]
        if f.file.syntax == "proto3" and rng.random() < 0.2:
            return rng.randint(-2**31, 2**31 - 1)
        return rng.choice(values)
    raise AssertionError(t)


def fill(rng, msg, depth=0, wkt=True):
    if wkt and fill_wkt(rng, msg, depth):
        return
    for f in msg.DESCRIPTOR.fields:
        if rng.random() < 0.45 and f.label != FD.LABEL_REQUIRED:
            continue
        is_msg = f.type in (FD.TYPE_MESSAGE, FD.TYPE_GROUP)
        if is_msg and depth >= 4:
            continue
        if is_msg and f.message_type.GetOptions().map_entry:
            kf, vf = f.message_type.fields
            m = getattr(msg, f.name)
            for _ in range(rng.randint(0, 3)):
                k = rand_scalar(rng, kf)
                if vf.type == FD.TYPE_MESSAGE:
                    fill(rng, m[k], depth + 1)
                else:
                    m[k] = rand_scalar(rng, vf)
        elif f.label == FD.LABEL_REPEATED:
            r = getattr(msg, f.name)
            for _ in range(rng.randint(0, 4)):
                if is_msg:
                    fill(rng, r.add(), depth + 1)
                else:
                    r.append(rand_scalar(rng, f))
        elif is_msg:
            sub = getattr(msg, f.name)
            sub.SetInParent()
            fill(rng, sub, depth + 1)
        else:
            setattr(msg, f.name, rand_scalar(rng, f))


TYPES = [
    "xtest.All", "xtest.All", "xtest.All", "xtest.Inner", "xtest2.Legacy",
    "grpc.testing.SimpleRequest", "grpc.testing.SimpleResponse",
    "grpc.testing.StreamingOutputCallRequest", "grpc.testing.LoadBalancerStatsResponse",
    "grpc.testing.LoadBalancerAccumulatedStatsResponse", "grpc.testing.ClientConfigureRequest",
    "collector.Collection", "collector.CollectionDir", "collector.SearchRequest",
    "collector.ActiveWorkflow", "collector.PushCollectionRequest", "collector.BackupMetadata",
    "collector.ResetResponse", "collector.RegisterProtoRequest", "collector.Execution",
    "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue",
    "google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.Any",
    "google.protobuf.FieldMask", "google.protobuf.Int64Value", "google.protobuf.BytesValue",
    "google.protobuf.FloatValue", "google.protobuf.Empty",
]


def random_messages(count, seed):
    # The stub modules are imported above so that their types are in the default pool.
    assert collection_pb2 and collection_repo_pb2 and collection_server_pb2 and common_pb2
    assert console_pb2 and registry_pb2 and worker_pb2 and messages_pb2 and any_pb2 and duration_pb2
    assert empty_pb2 and field_mask_pb2 and struct_pb2 and timestamp_pb2 and wrappers_pb2
    rng = random.Random(seed)
    out = []
    for i in range(count):
        name = TYPES[i % len(TYPES)]
        m = msg_class(name)()
        fill(rng, m)
        out.append((name, m))
    return out


def to_dict(m, proto_names):
    return json_format.MessageToDict(m, preserving_proto_field_name=proto_names)


# ---- the tests ----

@pytest.mark.parametrize("proto_names", [False, True], ids=["json_names", "proto_names"])
def test_bytes_to_json_matches_python(pbjson, proto_names):
    msgs = random_messages(600, seed=1 + proto_names)
    mode = "p" if proto_names else "j"
    res = pbjson.run([(mode, name, m.SerializeToString()) for name, m in msgs])
    for (name, m), (ok, text) in zip(msgs, res):
        assert ok, f"{name}: {text}\n{m}"
        assert json.loads(text) == to_dict(m, proto_names), f"{name}: {text}"


@pytest.mark.parametrize("proto_names", [False, True], ids=["json_names", "proto_names"])
def test_python_json_to_bytes(pbjson, proto_names):
    msgs = random_messages(600, seed=11 + proto_names)
    texts = [json_format.MessageToJson(m, preserving_proto_field_name=proto_names)
             for _, m in msgs]
    res = pbjson.run([("r", name, t.encode()) for (name, _), t in zip(msgs, texts)])
    for (name, m), text, (ok, out) in zip(msgs, texts, res):
        assert ok, f"{name}: {out}\n{text}"
        back = msg_class(name).FromString(base64.b64decode(out))
        assert to_dict(back, False) == to_dict(m, False), f"{name}: {text}"


def test_canonical_bytes(pbjson):
    """Bytes from JSON are what protobuf writes deterministically when no map is involved:
    fields in number order, packed repeated scalars, defaults left out."""
    rng = random.Random(5)
    msgs = []
    for name in ["xtest.All", "xtest2.Legacy", "collector.Collection", "grpc.testing.SimpleRequest"]:
        for _ in range(40):
            m = msg_class(name)()
            fill(rng, m)
            for f in m.DESCRIPTOR.fields:
                if (f.type == FD.TYPE_MESSAGE and f.message_type.GetOptions().map_entry) or \
                        f.name in ("w_any", "r_any", "w_struct", "w_value", "w_list", "r_value",
                                   "m_value", "m_any", "f_msg", "r_msg", "o_msg", "p_msg",
                                   "metadata", "orca_per_query_report",
                                   "orca_oob_report"):
                    m.ClearField(f.name)
            msgs.append((name, m))
    res = pbjson.run([("r", n, json_format.MessageToJson(m).encode()) for n, m in msgs])
    compared = 0
    for (name, m), (ok, out) in zip(msgs, res):
        assert ok, out
        if "NaN" in json_format.MessageToJson(m):
            continue  # JSON has one NaN: a payload does not survive it
        compared += 1
        assert base64.b64decode(out) == m.SerializeToString(deterministic=True), \
            f"{name}: {json_format.MessageToJson(m)}"
    assert compared > 100


def test_errors(pbjson):
    reqs = [
        ("j", "collector.Collection", b"\x0a\x05ab"),               # length past the end
        ("j", "collector.Collection", b"\x0a"),                     # truncated length
        ("j", "collector.Collection", b"\x08\x01"),                 # varint for a string
        ("j", "collector.Collection", b"\x0a\x02\xc3\x28"),         # invalid UTF-8
        ("j", "google.protobuf.Any", b"\x0a\x0bexample.com"),       # unknown Any type
        ("j", "google.protobuf.Timestamp", b"\x08\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"),
        ("r", "collector.Collection", b'{"nosuch":1}'),
        ("r", "collector.Collection", b'{"name":1}'),
        ("r", "collector.Collection", b'{"name":"a","name":"b"}'),
        ("r", "collector.Collection", b'{"name":"a",}'),
        ("r", "collector.PushCollectionRequest", b'{"chunk":"","metadata":{}}'),
        ("r", "xtest.All", b'{"fInt32":2147483648}'),
        ("r", "xtest.All", b'{"fUint64":"-1"}'),
        ("r", "xtest.All", b'{"fFloat":1e39}'),
        ("r", "xtest.All", b'{"fEnum":"PURPLE"}'),
        ("r", "xtest.All", b'{"mBool":{"yes":"x"}}'),
        ("r", "google.protobuf.Timestamp", b'"2020-02-30T00:00:00Z"'),
        ("r", "google.protobuf.Duration", b'"315576000001s"'),
        ("r", "xtest.All", b'{"fString":"\\ud800"}'),
        ("r", "xtest.Nope", b"{}"),
    ]
    for (mode, name, data), (ok, text) in zip(reqs, pbjson.run(reqs)):
        assert not ok, f"{name} {data!r} gave {text}"
        assert text, name
