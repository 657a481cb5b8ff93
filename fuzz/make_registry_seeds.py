#!/usr/bin/python3
"""Writes the seed corpus of fuzz_registry: RegisterProto and RegisterService requests
(byte 0 = kind, namespace and removal, see fuzz_registry.c) with files that import each
other, compatible and incompatible versions, nested messages, maps, enums and services. Needs the
python stubs (tests/gen_stubs.sh build/pygen). Run: fuzz/make_registry_seeds.py"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'build', 'pygen'))

from google.protobuf import descriptor_pb2 as D  # noqa: E402

from collector import registry_pb2  # noqa: E402

OUT = os.path.join(HERE, 'corpus', 'fuzz_registry')
F = D.FieldDescriptorProto


def animal(version):
    f = D.FileDescriptorProto(name='zoo/animal.proto', package='zoo', syntax='proto3')
    m = f.message_type.add(name='Animal')
    m.field.add(name='name', number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    legs_type = F.TYPE_STRING if version == 3 else F.TYPE_INT32
    m.field.add(name='legs', number=2, type=legs_type, label=F.LABEL_OPTIONAL)
    if version >= 2:
        m.field.add(name='tags', number=3, type=F.TYPE_STRING, label=F.LABEL_REPEATED)
        leg = m.nested_type.add(name='Leg')
        leg.field.add(name='length', number=1, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
        m.field.add(name='front', number=4, type=F.TYPE_MESSAGE, type_name='.zoo.Animal.Leg',
                    label=F.LABEL_OPTIONAL)
        e = f.enum_type.add(name='Kind')
        e.value.add(name='KIND_UNKNOWN', number=0)
        e.value.add(name='KIND_BIRD', number=1)
        m.field.add(name='kind', number=5, type=F.TYPE_ENUM, type_name='.zoo.Kind',
                    label=F.LABEL_OPTIONAL)
        entry = m.nested_type.add(name='NotesEntry')
        entry.options.map_entry = True
        entry.field.add(name='key', number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
        entry.field.add(name='value', number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
        m.field.add(name='notes', number=6, type=F.TYPE_MESSAGE,
                    type_name='.zoo.Animal.NotesEntry', label=F.LABEL_REPEATED)
    return f


def keeper():
    f = D.FileDescriptorProto(name='zoo/keeper.proto', package='zoo.staff', syntax='proto3',
                              dependency=['zoo/animal.proto', 'google/protobuf/timestamp.proto'])
    m = f.message_type.add(name='Keeper')
    m.field.add(name='animals', number=1, type=F.TYPE_MESSAGE, type_name='.zoo.Animal',
                label=F.LABEL_REPEATED)
    m.field.add(name='since', number=2, type=F.TYPE_MESSAGE,
                type_name='.google.protobuf.Timestamp', label=F.LABEL_OPTIONAL)
    s = f.service.add(name='Feeder')
    s.method.add(name='Feed', input_type='.zoo.Animal', output_type='Keeper')
    s.method.add(name='Watch', input_type='.zoo.Animal', output_type='.zoo.Animal',
                 server_streaming=True)
    return f


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {}
    for v in (1, 2, 3):
        req = registry_pb2.RegisterProtoRequest(namespace='zoo', file_descriptor=animal(v))
        seeds[f'proto_animal_v{v}'] = bytes([0]) + req.SerializeToString()
    req = registry_pb2.RegisterProtoRequest(file_descriptor=keeper(), dependencies=[animal(2)])
    seeds['proto_keeper_with_dep'] = bytes([2]) + req.SerializeToString()
    k = keeper()
    req = registry_pb2.RegisterServiceRequest(service_descriptor=k.service[0], file_descriptor=k)
    seeds['service_feeder'] = bytes([1]) + req.SerializeToString()
    bare = D.ServiceDescriptorProto(name='zoo.Greeter')
    bare.method.add(name='Hello', input_type='.google.protobuf.Empty',
                    output_type='.collector.Status')
    req = registry_pb2.RegisterServiceRequest(service_descriptor=bare)
    seeds['service_bare'] = bytes([3]) + req.SerializeToString()
    # Bit 3 of byte 0: unregister what was registered, then register it again.
    for name in ('proto_animal_v2', 'proto_keeper_with_dep', 'service_feeder', 'service_bare'):
        seeds[name + '_unregister'] = bytes([seeds[name][0] | 8]) + seeds[name][1:]
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), 'wb') as out:
            out.write(data)


main()
