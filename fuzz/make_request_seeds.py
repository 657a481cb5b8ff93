#!/usr/bin/python3
"""Writes the seed corpus of fuzz_requests (input: method path without its '/', '\\n',
request bytes; see fuzz_requests.c): an empty request for every method the node routes, a
few well-formed requests, and the shapes issue 13 found: messages nested past the limit
for each recursive type (Struct, Value, ListValue, DescriptorProto), thousands deep
(protobuf-c alone overflowed the stack on them), and singular message
fields sent hundreds of thousands of times (megabytes: protobuf-c alone took tens of
seconds on them, which the harness's -timeout flags). Needs the python stubs
(tests/gen_stubs.sh build/pygen). Run: fuzz/make_request_seeds.py"""
import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'build', 'pygen'))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'e2e'))

from google.protobuf import descriptor_pb2 as D  # noqa: E402
from google.protobuf import struct_pb2  # noqa: E402

from collector import collection_pb2, collection_repo_pb2, collection_server_pb2  # noqa: E402
from collector import console_pb2, dispatcher_pb2, registry_pb2, worker_pb2  # noqa: E402
from wirebytes import deep_descriptor, deep_list_value, deep_struct, ld, s, vint  # noqa: E402

OUT = os.path.join(HERE, 'corpus', 'fuzz_requests')
CS = 'collector.CollectionService/'
REPO = 'collector.CollectionRepo/'
REG = 'collector.CollectorRegistry/'


def write(path, body):
    data = path.encode() + b'\n' + body
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(OUT, name), 'wb') as f:
        f.write(data)


def paths():
    for mod in (collection_repo_pb2, collection_server_pb2, console_pb2, dispatcher_pb2,
                registry_pb2, worker_pb2):
        for svc in mod.DESCRIPTOR.services_by_name.values():
            for m in svc.methods:
                yield f'{svc.full_name}/{m.name}'
    yield 'grpc.health.v1.Health/Check'
    yield 'grpc.reflection.v1.ServerReflection/ServerReflectionInfo'


def well_formed():
    coll = collection_pb2.Collection(namespace='fuzz', name='c1')
    coll.message_type.message_name = 'grpc.testing.SimpleRequest'
    write(REPO + 'CreateCollection',
          collection_repo_pb2.CreateCollectionRequest(collection=coll).SerializeToString())
    create = collection_server_pb2.CreateRequest(namespace='fuzz', collection_name='c1')
    create.item.type_url = 'type.googleapis.com/grpc.testing.SimpleRequest'
    create.item.value = bytes([0x10, 0x05])  # response_size: 5
    write(CS + 'Create', create.SerializeToString())
    lst = collection_server_pb2.ListRequest(namespace='fuzz', collection_name='c1', page_size=3)
    lst.filter.update({'response_size': 5})
    write(CS + 'List', lst.SerializeToString())
    search = collection_server_pb2.SearchRequest(namespace='fuzz', collection_name='c1',
                                                 full_text='a b')
    search.filters['response_size'].operator = collection_server_pb2.OP_GREATER_THAN
    search.filters['response_size'].value.number_value = 1
    write(CS + 'Search', search.SerializeToString())
    sc = collection_repo_pb2.SearchCollectionsRequest(namespace='fuzz')
    sc.query.update({'full_text': 'x', 'size': {'operator': 'OP_GREATER_THAN', 'value': 5}})
    write(REPO + 'SearchCollections', sc.SerializeToString())
    f = D.FileDescriptorProto(name='z/a.proto', package='z', syntax='proto3')
    m = f.message_type.add(name='A')
    m.field.add(name='n', number=1, type=D.FieldDescriptorProto.TYPE_STRING,
                label=D.FieldDescriptorProto.LABEL_OPTIONAL)
    m.nested_type.add(name='B')
    write(REG + 'RegisterProto',
          registry_pb2.RegisterProtoRequest(namespace='fuzz', file_descriptor=f).SerializeToString())
    sd = f.service.add(name='S')
    sd.method.add(name='M', input_type='.z.A', output_type='.z.A')
    write(REG + 'RegisterService', registry_pb2.RegisterServiceRequest(
        namespace='fuzz', service_descriptor=sd, file_descriptor=f).SerializeToString())
    st = struct_pb2.Struct()
    st.update({'a': [1, {'b': None}], 'c': 'd'})
    write(CS + 'List', s(1, 'fuzz') + s(2, 'c1') + ld(3, st.SerializeToString()))


def file_with(msg):
    return s(1, 'a.proto') + s(2, 'p') + ld(4, msg)


def too_deep():
    write(CS + 'List', s(1, 'fuzz') + s(2, 'c1') + ld(3, deep_struct(3000)))
    write(CS + 'Search', s(1, 'fuzz') + s(2, 'c1')
          + ld(4, s(1, 'k') + ld(2, vint(1, 0) + ld(2, deep_list_value(4500)))))
    write(REPO + 'SearchCollections', s(1, 'fuzz') + ld(3, deep_struct(3000)))
    write(REG + 'RegisterProto', s(1, 'fuzz') + ld(2, file_with(deep_descriptor(9000))))
    write(REG + 'RegisterProto', s(1, 'fuzz') + ld(2, file_with(s(1, 'M')))
          + ld(3, s(1, 'b.proto') + ld(4, deep_descriptor(9000))))
    write(REG + 'RegisterService', s(1, 'fuzz') + ld(2, s(1, 'S'))
          + ld(3, file_with(deep_descriptor(9000))))


def repeated(prefix, field, part, size):
    one = ld(field, part)
    return prefix + one * (size // len(one))


def repeated_singular():
    MB = 1 << 20
    write(CS + 'List', repeated(s(1, 'fuzz') + s(2, 'c1'), 3, ld(1, s(1, 'a') + ld(2, b'')),
                                2 * MB))
    write(REPO + 'CreateCollection', repeated(b'', 1, s(4, 'f'), 2 * MB))
    write(REG + 'RegisterProto', repeated(s(1, 'fuzz'), 2, s(3, 'd.proto'), MB))
    write(REG + 'RegisterService', repeated(s(1, 'fuzz'), 2, ld(2, s(1, 'm')), MB))
    write(REPO + 'SearchCollections', repeated(s(1, 'fuzz'), 3, ld(1, s(1, 'a') + ld(2, b'')),
                                               MB))


def main():
    os.makedirs(OUT, exist_ok=True)
    for p in paths():
        write(p, b'')
    well_formed()
    too_deep()
    repeated_singular()


main()
