"""Helpers for test_registry.py: the zoo FileDescriptorProtos built at run time, message
classes made from them in a client-side pool, the CollectorRegistry calls, and raw calls
on any method path (to see what validation answers)."""

import copy
import re

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from collections_util import NS_HEADER, T, assert_ok, call, check_details
from collector import common_pb2  # noqa: F401  (puts collector/common.proto and its imports in the default pool)
from collector import registry_pb2, registry_pb2_grpc

FDP = descriptor_pb2.FieldDescriptorProto
STRING, INT32, DOUBLE, BOOL = FDP.TYPE_STRING, FDP.TYPE_INT32, FDP.TYPE_DOUBLE, FDP.TYPE_BOOL
MESSAGE, ENUM = FDP.TYPE_MESSAGE, FDP.TYPE_ENUM

ANIMAL_FILE = "zoo/animal.proto"
KEEPER_FILE = "zoo/keeper.proto"
FEEDER_FILE = "zoo/feeder.proto"

# The node's own services, registered in its default namespace at start.
NODE_SERVICES = sorted([
    "collector.CollectorRegistry", "collector.CollectionService", "collector.CollectionRepo",
    "collector.CollectiveDispatcher", "collector.CollectiveWorker", "collector.CollectorConsole",
    "collector.CollectorAuth", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
])

# ---------------------------------------------------------------------------------------
# Descriptors


def field(name, number, type_, type_name="", repeated=False):
    f = FDP(name=name, number=number, type=type_,
            label=FDP.LABEL_REPEATED if repeated else FDP.LABEL_OPTIONAL)
    if type_name:
        f.type_name = type_name
    return f


def message(name, *fields, nested=()):
    m = descriptor_pb2.DescriptorProto(name=name, field=list(fields))
    m.nested_type.extend(nested)
    return m


def enum(name, *values):
    return descriptor_pb2.EnumDescriptorProto(
        name=name, value=[descriptor_pb2.EnumValueDescriptorProto(name=v, number=i) for i, v in enumerate(values)])


def map_entry(name, key_type=STRING, value_type=STRING):
    m = message(name, field("key", 1, key_type), field("value", 2, value_type))
    m.options.map_entry = True
    return m


def method(name, input_type, output_type, client_streaming=False, server_streaming=False):
    return descriptor_pb2.MethodDescriptorProto(
        name=name, input_type=input_type, output_type=output_type,
        client_streaming=client_streaming, server_streaming=server_streaming)


def service(name, *methods):
    return descriptor_pb2.ServiceDescriptorProto(name=name, method=list(methods))


def proto_file(name, package="zoo", deps=(), messages=(), enums=(), services=()):
    return descriptor_pb2.FileDescriptorProto(
        name=name, package=package, syntax="proto3", dependency=list(deps),
        message_type=list(messages), enum_type=list(enums), service=list(services))


def animal_file():
    """zoo/animal.proto:
        enum Diet { DIET_UNKNOWN = 0; HERBIVORE = 1; CARNIVORE = 2; }
        enum Mood { MOOD_UNKNOWN = 0; CALM = 1; }
        message Animal {
          message Leg { string side = 1; int32 length_cm = 2; }
          string name = 1; int32 legs = 2; repeated string tags = 3; Leg front = 4;
          map<string, string> labels = 5; Diet diet = 6; repeated Leg all_legs = 7;
        }
        message Other { string note = 1; }
    """
    leg = message("Leg", field("side", 1, STRING), field("length_cm", 2, INT32))
    animal = message(
        "Animal",
        field("name", 1, STRING),
        field("legs", 2, INT32),
        field("tags", 3, STRING, repeated=True),
        field("front", 4, MESSAGE, ".zoo.Animal.Leg"),
        field("labels", 5, MESSAGE, ".zoo.Animal.LabelsEntry", repeated=True),
        field("diet", 6, ENUM, ".zoo.Diet"),
        field("all_legs", 7, MESSAGE, ".zoo.Animal.Leg", repeated=True),
        nested=[leg, map_entry("LabelsEntry")],
    )
    other = message("Other", field("note", 1, STRING))
    return proto_file(ANIMAL_FILE, messages=[animal, other],
                      enums=[enum("Diet", "DIET_UNKNOWN", "HERBIVORE", "CARNIVORE"),
                             enum("Mood", "MOOD_UNKNOWN", "CALM")])


ANIMAL_MESSAGES = {"zoo.Animal", "zoo.Animal.Leg", "zoo.Other"}


def keeper_file():
    """zoo/keeper.proto, importing zoo/animal.proto, a well-known type and the collector API:
        message Keeper { string name = 1; repeated Animal animals = 2;
                         google.protobuf.Timestamp since = 3; collector.Metadata meta = 4;
                         Diet favourite = 5; }
    """
    keeper = message(
        "Keeper",
        field("name", 1, STRING),
        field("animals", 2, MESSAGE, ".zoo.Animal", repeated=True),
        field("since", 3, MESSAGE, ".google.protobuf.Timestamp"),
        field("meta", 4, MESSAGE, ".collector.Metadata"),
        field("favourite", 5, ENUM, ".zoo.Diet"),
    )
    return proto_file(KEEPER_FILE, deps=[ANIMAL_FILE, "google/protobuf/timestamp.proto", "collector/common.proto"],
                      messages=[keeper])


def feeder_file(relative=False):
    """zoo/feeder.proto, importing zoo/animal.proto:
        message FeedRequest { string animal = 1; int32 grams = 2; }
        message FeedReply { bool ok = 1; string note = 2; }
        service Feeder {
          rpc Feed(FeedRequest) returns (FeedReply);
          rpc Watch(FeedRequest) returns (stream FeedReply);
          rpc Herd(stream Animal) returns (FeedReply);
          rpc Chat(stream FeedRequest) returns (stream FeedReply);
        }
    relative: the method types as names relative to the package ("FeedRequest")."""
    q = "" if relative else ".zoo."
    feeder = service(
        "Feeder",
        method("Feed", q + "FeedRequest", q + "FeedReply"),
        method("Watch", q + "FeedRequest", q + "FeedReply", server_streaming=True),
        method("Herd", q + "Animal", q + "FeedReply", client_streaming=True),
        method("Chat", q + "FeedRequest", q + "FeedReply", client_streaming=True, server_streaming=True),
    )
    return proto_file(
        FEEDER_FILE, deps=[ANIMAL_FILE],
        messages=[message("FeedRequest", field("animal", 1, STRING), field("grams", 2, INT32)),
                  message("FeedReply", field("ok", 1, BOOL), field("note", 2, STRING))],
        services=[feeder])


FEEDER_METHODS = ["Feed", "Watch", "Herd", "Chat"]


def feeder_messages():
    """zoo/feeder.proto without its service: the method types alone."""
    fd = feeder_file()
    del fd.service[:]
    return fd


def msg_of(fd, path):
    """The DescriptorProto at a dotted path inside a file ("Animal.Leg")."""
    parts = path.split(".")
    ms = fd.message_type
    for i, p in enumerate(parts):
        m = next(x for x in ms if x.name == p)
        if i + 1 < len(parts):
            ms = m.nested_type
    return m


def field_of(m, number):
    return next(f for f in m.field if f.number == number)


def remove_field(m, number):
    keep = [f for f in m.field if f.number != number]
    del m.field[:]
    m.field.extend(keep)


def remove_message(fd, name):
    keep = [m for m in fd.message_type if m.name != name]
    del fd.message_type[:]
    fd.message_type.extend(keep)


def changed(fd, edit):
    """A copy of fd with edit(copy) applied."""
    c = copy.deepcopy(fd)
    edit(c)
    return c


def compiled_service(module, name):
    """The ServiceDescriptorProto of a compiled-in service, from its python stub module,
    named by its full name (it is registered without its file)."""
    sd = descriptor_pb2.ServiceDescriptorProto()
    d = module.DESCRIPTOR.services_by_name[name]
    d.CopyToProto(sd)
    sd.name = d.full_name
    return sd


def method_shapes(sd):
    return [(m.name, m.input_type, m.output_type, m.client_streaming, m.server_streaming) for m in sd.method]


# ---------------------------------------------------------------------------------------
# Messages of the registered types, on the client side


class Classes:
    """Message classes built from FileDescriptorProtos (given in import order) in a fresh
    pool; imports that are not among them come from the stubs (well-known types, collector)."""

    def __init__(self, *fds):
        self.pool = descriptor_pool.DescriptorPool()
        self._added = set()
        given = {fd.name for fd in fds}
        for fd in fds:
            for dep in fd.dependency:
                if dep not in given:
                    self._add_compiled(dep)
            self.pool.Add(fd)
            self._added.add(fd.name)
        self._factory = message_factory.MessageFactory(self.pool)

    def _add_compiled(self, name):
        if name in self._added:
            return
        fd = descriptor_pool.Default().FindFileByName(name)
        for dep in fd.dependencies:
            self._add_compiled(dep.name)
        p = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(p)
        self.pool.Add(p)
        self._added.add(name)

    def __getitem__(self, full_name):
        return self._factory.GetPrototype(self.pool.FindMessageTypeByName(full_name))


# ---------------------------------------------------------------------------------------
# The registry


def hdr(ns):
    return ((NS_HEADER, ns),)


class Reg:
    """CollectorRegistry on a node; each helper expects success and checks the response."""

    def __init__(self, node):
        self.ch = node.channel()
        self.stub = registry_pb2_grpc.CollectorRegistryStub(self.ch)

    @staticmethod
    def proto_req(ns, fd, deps=()):
        req = registry_pb2.RegisterProtoRequest(namespace=ns, dependencies=list(deps))
        if fd is not None:
            req.file_descriptor.CopyFrom(fd)
        return req

    @staticmethod
    def service_req(ns, sd, fd=None):
        req = registry_pb2.RegisterServiceRequest(namespace=ns)
        if sd is not None:
            req.service_descriptor.CopyFrom(sd)
        if fd is not None:
            req.file_descriptor.CopyFrom(fd)
        return req

    def proto(self, ns, fd, deps=(), metadata=None):
        r = assert_ok(call(self.stub.RegisterProto, self.proto_req(ns, fd, deps), metadata))
        # Upstream's form: <namespace>/<file>, and @<n> from the second version on.
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*/" + re.escape(fd.name) + r"(@[1-9][0-9]*)?", r.proto_id), \
            f"proto_id {r.proto_id!r} is not <namespace>/{fd.name}[@n]"
        assert not ns or r.proto_id.startswith(ns + "/"), r.proto_id
        return r

    def service(self, ns, sd, fd=None, metadata=None):
        r = assert_ok(call(self.stub.RegisterService, self.service_req(ns, sd, fd), metadata))
        full = f"{fd.package}.{sd.name}" if fd is not None and fd.package else sd.name
        # Upstream's form: <namespace>/<service>.
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*/" + re.escape(full), r.service_id), \
            f"service_id {r.service_id!r} is not <namespace>/{full}"
        return r

    def lookup(self, ns, name, metadata=None):
        req = registry_pb2.LookupServiceRequest(namespace=ns, service_name=name)
        r = assert_ok(call(self.stub.LookupService, req, metadata))
        assert r.HasField("service"), "LookupServiceResponse has no service"
        return r.service

    def validate(self, ns, svc, meth, metadata=None):
        req = registry_pb2.ValidateMethodRequest(namespace=ns, service_name=svc, method_name=meth)
        return assert_ok(call(self.stub.ValidateMethod, req, metadata))

    def list(self, ns, metadata=None):
        return list(assert_ok(call(self.stub.ListServices, registry_pb2.ListServicesRequest(namespace=ns),
                                   metadata)).services)

    def unregister_proto(self, ns, file_name, metadata=None):
        req = registry_pb2.UnregisterProtoRequest(namespace=ns, file_name=file_name)
        return assert_ok(call(self.stub.UnregisterProto, req, metadata))

    def unregister_service(self, ns, service_name, metadata=None):
        req = registry_pb2.UnregisterServiceRequest(namespace=ns, service_name=service_name)
        return assert_ok(call(self.stub.UnregisterService, req, metadata))

    def zoo(self, ns):
        """animal.proto, keeper.proto (with its import given) and the Feeder service
        registered in ns; returns the three responses."""
        a = self.proto(ns, animal_file())
        k = self.proto(ns, keeper_file(), [animal_file()])
        fd = feeder_file()
        s = self.service(ns, fd.service[0], fd)
        return a, k, s


# ---------------------------------------------------------------------------------------
# Raw calls on any path (bytes in, bytes out)

KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


def _ident(b):
    return b


def raw_call(ch, path, kind="unary_unary", ns=None, payload=b""):
    """Calls `path` with one request of `payload` bytes; returns the answer(s)."""
    fn = getattr(ch, kind)(path, request_serializer=_ident, response_deserializer=_ident)
    md = hdr(ns) if ns is not None else None
    arg = payload if kind.startswith("unary_") else iter([payload])
    r = fn(arg, timeout=T, metadata=md)
    return list(r) if kind.endswith("_stream") else r


def expect_raw_error(code, ch, path, kind="unary_unary", ns=None, payload=b"", mentions=()):
    try:
        r = raw_call(ch, path, kind, ns, payload)
    except grpc.RpcError as e:
        err = e
    else:
        raise AssertionError(f"{kind} {path} (namespace {ns}): expected {code.name}, it succeeded: {r!r:.200}")
    assert err.code() == code, f"{kind} {path} (namespace {ns}): expected {code.name}, got {err.code().name}: {err.details()!r}"
    check_details(err, mentions)
    return err
