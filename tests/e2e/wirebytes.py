"""Protobuf wire bytes built by hand, for requests no protobuf library would make: messages
nested thousands deep, singular fields sent hundreds of thousands of times. Each builder
costs its output's size (deep nesting is written from the inside out, one header per
level), so the tests can build multi-megabyte bodies quickly."""

import struct


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def ld(num, payload):
    """Field `num`, length-delimited, holding `payload`."""
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def s(num, text):
    return ld(num, text.encode())


def vint(num, n):
    return varint(num << 3) + varint(n)


def nest(depth, inner, wrap):
    """Applies wrap (bytes -> bytes) depth times around inner, in linear time: the headers
    are collected from the inside out and joined once."""
    size = len(inner)
    heads = []
    for _ in range(depth):
        head = wrap(size)
        heads.append(head)
        size += len(head)
    return b"".join(reversed(heads)) + inner


def deep_struct(levels):
    """google.protobuf.Struct {"a": {"a": ... }} `levels` Structs deep (3 messages each)."""

    def wrap(n):
        # Struct.fields entry {key: "a", value: Value{struct_value: <n bytes>}}
        value = varint(5 << 3 | 2) + varint(n)  # Value.struct_value header
        entry_len = len(s(1, "a")) + 1 + len(varint(len(value) + n)) + len(value) + n
        entry_head = s(1, "a") + varint(2 << 3 | 2) + varint(len(value) + n) + value
        return varint(1 << 3 | 2) + varint(entry_len) + entry_head

    return nest(levels, b"", wrap)


def deep_list_value(levels):
    """google.protobuf.Value nested through list_value `levels` times (2 messages each)."""

    def wrap(n):
        inner = varint(1 << 3 | 2) + varint(n)  # ListValue.values header
        return varint(6 << 3 | 2) + varint(len(inner) + n) + inner

    return nest(levels, b"", wrap)


def deep_descriptor(levels, name="M"):
    """DescriptorProto with nested_type `levels` deep."""
    nm = s(1, name)

    def wrap(n):
        return nm + varint(3 << 3 | 2) + varint(n)

    return nest(levels, nm, wrap)


def grpc_frame(payload, compressed=False):
    return struct.pack(">BI", 1 if compressed else 0, len(payload)) + payload
