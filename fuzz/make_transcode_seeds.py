#!/usr/bin/python3
"""Writes the seed corpus of fuzz_transcode: protobuf bytes and JSON of compiled-in types,
and FileDescriptorProtos with payloads (descriptor mode). Needs the python stubs
(tests/gen_stubs.sh build/pygen). Run: fuzz/make_transcode_seeds.py"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'build', 'pygen'))

from google.protobuf import (any_pb2, descriptor_pb2, duration_pb2, json_format,  # noqa: E402
                             struct_pb2, timestamp_pb2, wrappers_pb2)

from collector import (collection_pb2, collection_server_pb2, common_pb2,  # noqa: E402
                       worker_pb2)

OUT = os.path.join(HERE, 'corpus', 'fuzz_transcode')

# The order of TYPES in fuzz_transcode.c.
TYPES = ['collector.Collection', 'collector.CollectionDir', 'collector.SearchRequest',
         'collector.ActiveWorkflow', 'collector.PushCollectionRequest', 'collector.BackupMetadata',
         'collector.ResetResponse', 'collector.RegisterProtoRequest', 'collector.Execution',
         'collector.BatchRequest', 'grpc.testing.SimpleRequest',
         'grpc.testing.StreamingOutputCallRequest', 'grpc.testing.LoadBalancerStatsResponse',
         'grpc.testing.LoadBalancerAccumulatedStatsResponse',
         'grpc.testing.ClientConfigureRequest', 'google.protobuf.Any', 'google.protobuf.Struct',
         'google.protobuf.Value', 'google.protobuf.ListValue', 'google.protobuf.Timestamp',
         'google.protobuf.Duration', 'google.protobuf.FieldMask', 'google.protobuf.Empty',
         'google.protobuf.Int64Value', 'google.protobuf.UInt32Value', 'google.protobuf.FloatValue',
         'google.protobuf.DoubleValue', 'google.protobuf.BytesValue',
         'google.protobuf.FileDescriptorSet', 'google.protobuf.FieldOptions']


def write(name, data):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name), 'wb') as f:
        f.write(data)


def compiled(name, msg):
    """Two seeds per message: its bytes and its JSON, with JSON and with .proto names."""
    idx = TYPES.index(msg.DESCRIPTOR.full_name)
    write(name + '.pb', bytes([0, idx]) + msg.SerializeToString())
    write(name + '.json', bytes([1, idx]) +
          json_format.MessageToJson(msg, preserving_proto_field_name=True, indent=None).encode())


def descriptor(name, fdp, msg_index, payload, flags=0):
    raw = fdp.SerializeToString()
    write(name, bytes([2 | flags]) + struct.pack('<H', len(raw)) + raw + bytes([msg_index]) +
          payload)


def test_file():
    f = descriptor_pb2.FileDescriptorProto(name='f/t.proto', package='f', syntax='proto3')
    f.dependency.append('google/protobuf/struct.proto')
    e = f.enum_type.add(name='E')
    e.value.add(name='E0', number=0)
    e.value.add(name='E1', number=1)
    m = f.message_type.add(name='M')
    FD = descriptor_pb2.FieldDescriptorProto
    for i, t in enumerate(range(1, 19), start=1):
        if t in (FD.TYPE_GROUP, FD.TYPE_MESSAGE, FD.TYPE_ENUM):
            continue
        m.field.add(name=f'f{t}', number=i, type=t, label=FD.LABEL_OPTIONAL)
        m.field.add(name=f'r{t}', number=100 + i, type=t, label=FD.LABEL_REPEATED)
    m.field.add(name='e', number=30, type=FD.TYPE_ENUM, type_name='.f.E',
                label=FD.LABEL_OPTIONAL)
    m.field.add(name='sub', number=31, type=FD.TYPE_MESSAGE, type_name='M',
                label=FD.LABEL_OPTIONAL)
    m.field.add(name='v', number=32, type=FD.TYPE_MESSAGE, type_name='google.protobuf.Value',
                label=FD.LABEL_OPTIONAL)
    entry = m.nested_type.add(name='KvEntry')
    entry.options.map_entry = True
    entry.field.add(name='key', number=1, type=FD.TYPE_INT64, label=FD.LABEL_OPTIONAL)
    entry.field.add(name='value', number=2, type=FD.TYPE_MESSAGE, type_name='.f.M',
                    label=FD.LABEL_OPTIONAL)
    m.field.add(name='kv', number=33, type=FD.TYPE_MESSAGE, type_name='KvEntry',
                label=FD.LABEL_REPEATED)
    m.oneof_decl.add(name='o')
    m.field.add(name='oa', number=40, type=FD.TYPE_STRING, label=FD.LABEL_OPTIONAL,
                oneof_index=0)
    m.field.add(name='ob', number=41, type=FD.TYPE_MESSAGE, type_name='M',
                label=FD.LABEL_OPTIONAL, oneof_index=0)
    return f


def legacy_file():
    f = descriptor_pb2.FileDescriptorProto(name='f/l.proto', package='g', syntax='proto2')
    FD = descriptor_pb2.FieldDescriptorProto
    e = f.enum_type.add(name='C')
    e.value.add(name='C5', number=5)
    e.value.add(name='C1', number=1)
    m = f.message_type.add(name='L')
    m.field.add(name='i', number=1, type=FD.TYPE_INT32, label=FD.LABEL_OPTIONAL)
    m.field.add(name='c', number=2, type=FD.TYPE_ENUM, type_name='C', label=FD.LABEL_REPEATED)
    grp = m.nested_type.add(name='G')
    grp.field.add(name='x', number=4, type=FD.TYPE_SINT64, label=FD.LABEL_OPTIONAL)
    m.field.add(name='g', number=3, type=FD.TYPE_GROUP, type_name='G', label=FD.LABEL_OPTIONAL)
    return f


def main():
    c = collection_pb2.Collection(namespace='ns', name='c', indexed_fields=['a.b', 'c'])
    c.message_type.message_name = 'zoo.Animal'
    c.metadata.created_at.FromJsonString('2024-01-02T03:04:05.123Z')
    c.metadata.labels['k'] = 'v\u00e9\U0001f600'
    compiled('collection', c)

    s = collection_server_pb2.SearchRequest(full_text='x', vector=[1.5, -0.0, float('inf')],
                                            limit=-1)
    json_format.ParseDict({'a': [1, None, 'x', {'b': True}]}, s.filters['f'].value.struct_value)
    s.filters['g'].operator = collection_server_pb2.OP_IN
    compiled('search', s)

    w = worker_pb2.ActiveWorkflow(id='w', state=worker_pb2.WORKFLOW_RUNNING)
    w.input.Pack(common_pb2.Status(code=common_pb2.Status.NOT_FOUND, message='m'))
    w.current_output.Pack(duration_pb2.Duration(seconds=-1, nanos=-5))
    w.task_executions['t'].attempt_number = 3
    compiled('workflow', w)

    a = any_pb2.Any()
    inner = any_pb2.Any()
    inner.Pack(wrappers_pb2.Int64Value(value=-2**63))
    a.Pack(inner)
    compiled('any_in_any', a)

    st = struct_pb2.Struct()
    json_format.ParseDict({'k': [1e300, 'é', None, {'x': []}], 'b': False}, st)
    compiled('struct', st)
    compiled('timestamp', timestamp_pb2.Timestamp(seconds=-62135596800, nanos=1000))
    compiled('uint32', wrappers_pb2.UInt32Value(value=2**32 - 1))

    fds = descriptor_pb2.FileDescriptorSet()
    fds.file.append(test_file())
    compiled('descriptor_set', fds)

    # Hand-made bytes: merges, a repeated map key, packed and unpacked, unknown group.
    write('merge.pb', bytes([0, 0]) + b'\x0a\x01a\x32\x02\x1a\x00\x32\x05\x1a\x03\x0a\x01k'
          b'\xa3\x06\x08\x01\xa4\x06')

    t = test_file()
    payload = (b'\x28\x96\x01' + b'\x15\x00\x00\x80\x7f' + b'\xca\x06\x02\x01\x02' +
               b'\x8a\x02\x06\x08\x7f\x12\x02\x28\x01' + b'\xc2\x02\x01x')
    descriptor('desc_bytes', t, 0, payload)
    descriptor('desc_json', t, 0, b'{"f1":"NaN","r3":["1","-2"],"kv":{"5":{"f9":"s"}},'
               b'"v":{"a":[null]},"ob":{"e":"E1"}}', flags=1)
    descriptor('desc_legacy', legacy_file(), 0, b'\x08\x00\x10\x05\x10\x07\x1b\x20\x01\x1c')


if __name__ == '__main__':
    main()
