"""CollectorRegistry end to end (issue 5): protobuf files and services registered at run
time, collections of the registered types, namespaces, validation of every call, server
reflection of what is registered, and all of it after a restart.

The contract (docs: /work/briefs/registry_spec.md, API.md "registry"):
- RegisterProto: empty names, unresolved types, missing imports, invalid or reserved
  namespaces are INVALID_ARGUMENT naming what is wrong; dependencies go in with the main
  file, all or nothing; the same file again keeps its proto_id; new fields, messages and
  enum values are a new version; a field number (of any earlier version) reused with
  another type, message/enum type, label or name, and a message removed while a
  collection uses it, are FAILED_PRECONDITION naming the message and the field.
- RegisterService: full name package.Service (or a dotted name without a file); method
  types must resolve; a node service registered in another namespace must keep the node's
  types; registering again replaces the methods and keeps the service_id.
- Everything is per namespace (request field, else the x-collector-namespace header, else
  the node's --namespace). With validation on, a call whose method is not registered in
  its namespace is UNIMPLEMENTED naming the method path and the namespace.

Most tests work in a fresh namespace of the shared node and never register anything in
"default", so that the default namespace holds exactly the node's own services.
"""

import copy
import re
import signal

import grpc
import pytest
from google.protobuf import descriptor_pb2

from collections_util import (
    DEFAULT_NS, TYPE_PREFIX, Api, C, Coll, assert_ok, call, create_collection_req,
    cs_pb2, expect_error, flt, nn, pack, repo_pb2, uniq,
)
from collector import collection_repo_pb2, collection_server_pb2, console_pb2, registry_pb2
from collector import auth_pb2, dispatcher_pb2, worker_pb2
from stdgrpc.testing import messages_pb2
from registry_util import (
    ANIMAL_FILE, ANIMAL_MESSAGES, DOUBLE, ENUM, FEEDER_FILE, FEEDER_METHODS, INT32, KEEPER_FILE,
    KINDS, MESSAGE, NODE_SERVICES, STRING, Classes, Reg, animal_file, changed, compiled_service,
    expect_raw_error, feeder_file, feeder_messages, field, field_of, hdr, keeper_file, message, method, method_shapes,
    msg_of, proto_file, remove_field, remove_message, service,
)
from test_reflection import VERSIONS, check_closure, files_of, load_pool

OP = cs_pb2.FilterOperator
MAP_ENTRIES = {"zoo.Animal.LabelsEntry"}
ANIMAL_TOP = {m for m in ANIMAL_MESSAGES if m.count(".") == 1}
REFLECTION_NOT_FOUND = 5


@pytest.fixture(scope="module")
def reg(shared_node):
    return Reg(shared_node)


@pytest.fixture(scope="module")
def api(shared_node):
    return Api(shared_node)


def names_field(e, ns, message_name, number, *field_names):
    """A refusal's message names the message and the field (its number or a name)."""
    d = e.details().replace(ns, "<ns>")
    assert message_name in d, f"{d!r} does not name the message {message_name}"
    by_number = re.search(rf"(?<![\w.-]){number}(?![\w])", d)
    assert by_number or any(n in d for n in field_names), \
        f"{d!r} names neither field number {number} nor {field_names}"


def unknown_type(api, ns, type_name):
    """CreateCollection of type_name in ns must fail as for a type nobody registered."""
    return expect_error(C.INVALID_ARGUMENT, api.repo.CreateCollection,
                        create_collection_req(ns, uniq("t"), type_name), mentions=[type_name])


def service_names(services):
    return [s.service_name for s in services]


# =======================================================================================
# RegisterProto


def test_register_proto_response(reg):
    r = reg.proto(uniq("rp"), animal_file())
    got = list(r.registered_messages)
    assert len(got) == len(set(got)), got
    # Top-level messages only, as upstream (nested ones and map entries belong to them).
    assert set(got) == ANIMAL_TOP, got


def test_same_file_twice_same_proto_id(reg):
    ns = uniq("same")
    a = reg.proto(ns, animal_file())
    k = reg.proto(ns, keeper_file())  # its import is registered in ns already
    again = reg.proto(ns, animal_file())
    assert again.proto_id == a.proto_id
    assert sorted(again.registered_messages) == sorted(a.registered_messages)
    # The dependency given again, unchanged, changes nothing either.
    assert reg.proto(ns, keeper_file(), [animal_file()]).proto_id == k.proto_id
    assert reg.proto(ns, animal_file()).proto_id == a.proto_id
    # Another namespace registers its own copy.
    assert reg.proto(uniq("same"), animal_file()).proto_id != a.proto_id


def _compatible_v2(fd):
    animal = msg_of(fd, "Animal")
    animal.nested_type.append(message("Tail", field("length_cm", 1, INT32)))
    animal.field.extend([field("weight", 8, DOUBLE), field("tail", 9, MESSAGE, ".zoo.Animal.Tail")])
    fd.message_type.append(message("Plant", field("name", 1, STRING)))
    fd.enum_type[0].value.append(descriptor_pb2.EnumValueDescriptorProto(name="OMNIVORE", number=3))


def test_compatible_change_new_proto_id(reg, api):
    ns = uniq("compat")
    v1 = reg.proto(ns, animal_file())
    v2fd = changed(animal_file(), _compatible_v2)
    v2 = reg.proto(ns, v2fd)
    assert v2.proto_id != v1.proto_id
    assert set(v2.registered_messages) == ANIMAL_TOP | {"zoo.Plant"}
    assert reg.proto(ns, v2fd).proto_id == v2.proto_id
    # The type pool has the new version: its fields index, store and search.
    Animal = Classes(v2fd)["zoo.Animal"]
    coll = api.coll("zoo.Animal", ns=ns, indexed=["weight", "tail.length_cm"])
    coll.put(pack(Animal(name="rex", weight=12.5, diet=3, tail={"length_cm": 30})), id="rex")
    coll.put(pack(Animal(name="ant", weight=0.5, diet=1)), id="ant")
    r = coll.search(filters={"weight": flt(OP.OP_GREATER_THAN, 10), "diet": flt(OP.OP_EQUALS, "OMNIVORE")})
    assert [Animal.FromString(x.item.value).name for x in r.results] == ["rex"]
    assert coll.search(filters={"tail.length_cm": flt(OP.OP_EQUALS, 30)}).total_count == 1
    api.coll("zoo.Plant", ns=ns)


def _retype(number, type_, type_name=""):
    def edit(fd):
        f = field_of(msg_of(fd, "Animal"), number)
        f.type = type_
        if type_name:
            f.type_name = type_name
        else:
            f.ClearField("type_name")
    return edit


def _relabel(number, repeated):
    def edit(fd):
        f = field_of(msg_of(fd, "Animal"), number)
        f.label = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED if repeated else \
            descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    return edit


def _rename(number, name, msg="Animal"):
    def edit(fd):
        field_of(msg_of(fd, msg), number).name = name
    return edit


def _leg_retype(fd):
    field_of(msg_of(fd, "Animal.Leg"), 2).type = STRING


# kind: (edit, message named, field number, field names)
INCOMPATIBLE = {
    "scalar-type": (_retype(2, STRING), "zoo.Animal", 2, ("legs",)),
    "int32-to-int64": (_retype(2, descriptor_pb2.FieldDescriptorProto.TYPE_INT64), "zoo.Animal", 2, ("legs",)),
    "message-type": (_retype(4, MESSAGE, ".zoo.Other"), "zoo.Animal", 4, ("front",)),
    "message-to-scalar": (_retype(4, STRING), "zoo.Animal", 4, ("front",)),
    "enum-type": (_retype(6, ENUM, ".zoo.Mood"), "zoo.Animal", 6, ("diet",)),
    "singular-to-repeated": (_relabel(2, True), "zoo.Animal", 2, ("legs",)),
    "repeated-to-singular": (_relabel(3, False), "zoo.Animal", 3, ("tags",)),
    "renamed": (_rename(2, "leg_count"), "zoo.Animal", 2, ("legs", "leg_count")),
    "nested-message-field": (_leg_retype, "zoo.Animal.Leg", 2, ("length_cm",)),
}


@pytest.mark.parametrize("kind", list(INCOMPATIBLE))
def test_incompatible_change_refused(reg, api, kind):
    edit, msg, number, names = INCOMPATIBLE[kind]
    ns = uniq("incompat")
    v1 = reg.proto(ns, animal_file())
    e = expect_error(C.FAILED_PRECONDITION, reg.stub.RegisterProto, reg.proto_req(ns, changed(animal_file(), edit)))
    names_field(e, ns, msg, number, *names)
    # Nothing changed: v1 is still the registered version, and still works.
    assert reg.proto(ns, animal_file()).proto_id == v1.proto_id
    coll = api.coll("zoo.Animal", ns=ns, indexed=["legs", "front.side", "diet"])
    Animal = Classes(animal_file())["zoo.Animal"]
    coll.put(pack(Animal(name="a", legs=4, tags=["x", "y"], front={"side": "l", "length_cm": 3}, diet=2)), id="a")
    assert coll.search(filters={"legs": flt(OP.OP_EQUALS, 4), "tags": flt(OP.OP_CONTAINS, "y")}).total_count == 1


def test_removed_field_number_reused(reg):
    ns = uniq("reuse")
    reg.proto(ns, animal_file())
    # Removing a field is accepted; another new field comes in a later version.
    v2fd = changed(animal_file(), lambda fd: remove_field(msg_of(fd, "Animal"), 2))
    reg.proto(ns, v2fd)
    v3fd = changed(v2fd, lambda fd: msg_of(fd, "Animal").field.append(field("weight", 8, DOUBLE)))
    v3 = reg.proto(ns, v3fd)
    # Number 2 lived in v1 only: it may not come back as anything else.
    for f in (field("legs", 2, STRING), field("leg_count", 2, INT32), field("legs", 2, INT32, repeated=True),
              field("legs", 2, MESSAGE, ".zoo.Other")):
        bad = changed(v3fd, lambda fd: msg_of(fd, "Animal").field.append(f))
        e = expect_error(C.FAILED_PRECONDITION, reg.stub.RegisterProto, reg.proto_req(ns, bad))
        names_field(e, ns, "zoo.Animal", 2, "legs", "leg_count")
        assert reg.proto(ns, v3fd).proto_id == v3.proto_id, "a refused version replaced the registered one"
    # The same field back, as it was, is compatible.
    reg.proto(ns, changed(v3fd, lambda fd: msg_of(fd, "Animal").field.append(field("legs", 2, INT32))))


def test_message_removed_while_collection_uses_it(reg, api):
    ns = uniq("rm")
    v1 = reg.proto(ns, animal_file())
    coll = api.coll("zoo.Other", ns=ns)
    without = changed(animal_file(), lambda fd: remove_message(fd, "Other"))
    e = expect_error(C.FAILED_PRECONDITION, reg.stub.RegisterProto, reg.proto_req(ns, without), mentions=["zoo.Other"])
    assert reg.proto(ns, animal_file()).proto_id == v1.proto_id
    Other = Classes(animal_file())["zoo.Other"]
    coll.put(pack(Other(note="still here")), id="o")
    assert Other.FromString(coll.get("o").value).note == "still here"
    # Where no collection uses it, the same removal is a new version.
    ns2 = uniq("rm")
    first = reg.proto(ns2, animal_file())
    assert reg.proto(ns2, without).proto_id != first.proto_id, e.details()
    unknown_type(api, ns2, "zoo.Other")


def test_dependencies_go_in_with_the_file(reg, api):
    ns = uniq("deps")
    k = reg.proto(ns, keeper_file(), [animal_file()])
    assert "zoo.Keeper" in k.registered_messages
    api.coll("zoo.Animal", ns=ns)
    keepers = api.coll("zoo.Keeper", ns=ns, indexed=["since", "meta.labels.shift"])
    cls = Classes(animal_file(), keeper_file())
    Keeper, Animal = cls["zoo.Keeper"], cls["zoo.Animal"]
    ann = Keeper(name="ann", animals=[Animal(name="zed", legs=4)], since={"seconds": 1700000000},
                 meta={"labels": {"shift": "night"}}, favourite=2)
    bob = Keeper(name="bob", since={"seconds": 1600000000}, meta={"labels": {"shift": "day"}})
    keepers.put(pack(ann), id="ann")
    keepers.put(pack(bob), id="bob")
    assert Keeper.FromString(keepers.get("ann").value) == ann
    r = keepers.search(filters={"since": flt(OP.OP_GREATER_THAN, "2022-01-01T00:00:00Z"),
                                "meta.labels.shift": flt(OP.OP_EQUALS, "night")})
    assert [Keeper.FromString(x.item.value).name for x in r.results] == ["ann"]
    assert keepers.search(filters={"favourite": flt(OP.OP_EQUALS, "CARNIVORE")}).total_count == 1


def test_imports_resolve_in_namespace_or_compiled_in(reg):
    ns = uniq("imp")
    # Not given, not registered, not compiled in: refused, naming the import.
    expect_error(C.INVALID_ARGUMENT, reg.stub.RegisterProto, reg.proto_req(ns, keeper_file()), mentions=[ANIMAL_FILE])
    # Registered in the namespace: need not be given. The well-known type and the collector
    # API that keeper.proto also imports are compiled in.
    reg.proto(ns, animal_file())
    reg.proto(ns, keeper_file())
    # Registered in another namespace does not count.
    expect_error(C.INVALID_ARGUMENT, reg.stub.RegisterProto, reg.proto_req(uniq("imp"), keeper_file()),
                 mentions=[ANIMAL_FILE])
    missing = proto_file("zoo/m.proto", deps=["zoo/nowhere.proto"], messages=[message("M", field("a", 1, STRING))])
    expect_error(C.INVALID_ARGUMENT, reg.stub.RegisterProto, reg.proto_req(ns, missing), mentions=["zoo/nowhere.proto"])


def _unresolved(type_, type_name):
    return proto_file("zoo/u.proto", messages=[message("U", field("a", 1, STRING), field("b", 2, type_, type_name))])


UNRESOLVED = [
    ("message", _unresolved(MESSAGE, ".zoo.Nope"), "zoo.Nope"),
    ("enum", _unresolved(ENUM, ".zoo.NoEnum"), "zoo.NoEnum"),
    ("relative", _unresolved(MESSAGE, "Nowhere"), "Nowhere"),
    ("collector-not-there", _unresolved(MESSAGE, ".collector.NoSuchMessage"), "collector.NoSuchMessage"),
    ("wkt-not-there", _unresolved(MESSAGE, ".google.protobuf.NoSuchType"), "google.protobuf.NoSuchType"),
    ("nested", proto_file("zoo/u.proto", messages=[message("U", nested=[
        message("In", field("c", 1, MESSAGE, ".zoo.U.Gone"))])]), "zoo.U.Gone"),
]


@pytest.mark.parametrize("fd,name", [(f, n) for _, f, n in UNRESOLVED], ids=[i for i, _, _ in UNRESOLVED])
def test_unresolved_type_refused(reg, api, fd, name):
    ns = uniq("unres")
    expect_error(C.INVALID_ARGUMENT, reg.stub.RegisterProto, reg.proto_req(ns, fd), mentions=[name])
    unknown_type(api, ns, "zoo.U")


def _empty_name(edit):
    return changed(animal_file(), edit)


EMPTY_NAMES = {
    "no-file": None,
    "file-name": _empty_name(lambda fd: setattr(fd, "name", "")),
    "message-name": _empty_name(lambda fd: setattr(msg_of(fd, "Other"), "name", "")),
    "nested-message-name": _empty_name(lambda fd: msg_of(fd, "Other").nested_type.append(message("", field("a", 1, STRING)))),
    "field-name": _empty_name(lambda fd: setattr(field_of(msg_of(fd, "Other"), 1), "name", "")),
    "enum-name": _empty_name(lambda fd: setattr(fd.enum_type[1], "name", "")),
}


@pytest.mark.parametrize("kind", list(EMPTY_NAMES))
def test_register_proto_empty_names(reg, api, kind):
    ns = uniq("empty")
    expect_error(C.INVALID_ARGUMENT, reg.stub.RegisterProto, reg.proto_req(ns, EMPTY_NAMES[kind]))
    unknown_type(api, ns, "zoo.Animal")


def test_all_or_nothing_with_dependencies(reg, api):
    ns = uniq("aon")
    base = proto_file("zoo/base.proto", messages=[message("Base", field("n", 1, STRING))])
    bad = proto_file("zoo/bad.proto", messages=[message("Bad", field("x", 1, MESSAGE, ".zoo.Nope"))])
    main = proto_file("zoo/main.proto", deps=["zoo/base.proto", "zoo/bad.proto"],
                      messages=[message("Main", field("b", 1, MESSAGE, ".zoo.Base"))])
    uses_base = proto_file("zoo/uses.proto", deps=["zoo/base.proto"],
                           messages=[message("Uses", field("b", 1, MESSAGE, ".zoo.Base"))])
    # A bad dependency: none of the three is registered.
    expect_error(C.INVALID_ARGUMENT, reg.stub.RegisterProto, reg.proto_req(ns, main, [base, bad]), mentions=["zoo.Nope"])
    for t in ("zoo.Base", "zoo.Bad", "zoo.Main"):
        unknown_type(api, ns, t)
    expect_error(C.INVALID_ARGUMENT, reg.stub.RegisterProto, reg.proto_req(ns, uses_base), mentions=["zoo/base.proto"])
    # A bad main file: its good dependency is not registered either.
    bad_main = proto_file("zoo/main.proto", deps=["zoo/base.proto"],
                          messages=[message("Main", field("b", 1, MESSAGE, ".zoo.Nope2"))])
    expect_error(C.INVALID_ARGUMENT, reg.stub.RegisterProto, reg.proto_req(ns, bad_main, [base]), mentions=["zoo.Nope2"])
    unknown_type(api, ns, "zoo.Base")
    # An incompatible dependency: the main file stays out, the old dependency stays in.
    v1 = reg.proto(ns, animal_file())
    e = expect_error(C.FAILED_PRECONDITION, reg.stub.RegisterProto,
                     reg.proto_req(ns, keeper_file(), [changed(animal_file(), _retype(2, STRING))]))
    names_field(e, ns, "zoo.Animal", 2, "legs")
    unknown_type(api, ns, "zoo.Keeper")
    assert reg.proto(ns, animal_file()).proto_id == v1.proto_id
    # Everything good: all in.
    reg.proto(ns, uses_base, [base])
    api.coll("zoo.Base", ns=ns)
    api.coll("zoo.Uses", ns=ns)


BAD_NAMESPACES = ["../x", "a.b", "a/b", "x" * 64, "-a", "system", "SYSTEM", "repo", "Backups", "files"]


@pytest.mark.parametrize("ns", BAD_NAMESPACES)
def test_invalid_or_reserved_namespace_refused(reg, ns):
    fd = feeder_file()
    reqs = [
        (reg.stub.RegisterProto, reg.proto_req(ns, animal_file())),
        (reg.stub.RegisterService, reg.service_req(ns, fd.service[0], fd)),
        (reg.stub.LookupService, registry_pb2.LookupServiceRequest(namespace=ns, service_name="zoo.Feeder")),
        (reg.stub.ValidateMethod, registry_pb2.ValidateMethodRequest(namespace=ns, service_name="zoo.Feeder",
                                                                     method_name="Feed")),
        (reg.stub.ListServices, registry_pb2.ListServicesRequest(namespace=ns)),
    ]
    wrong = []
    for fn, req in reqs:
        try:
            fn(req, timeout=10)
            wrong.append(f"{type(req).__name__}: OK")
        except grpc.RpcError as e:
            if e.code() != C.INVALID_ARGUMENT:
                wrong.append(f"{type(req).__name__}: {e.code().name} {e.details()!r}")
    assert not wrong, f"namespace {ns!r} not refused with INVALID_ARGUMENT by: " + "; ".join(wrong)


# =======================================================================================
# Collections of registered types


def _zoo_animals(Animal):
    return [
        Animal(name="zebra", legs=4, tags=["stripes", "savanna"], front={"side": "left", "length_cm": 80},
               labels={"habitat": "savanna"}, diet=1),
        Animal(name="bird", legs=2, tags=["feathers"], labels={"habitat": "forest"}, diet=2),
        Animal(name="spider", legs=8, tags=["web"], front={"side": "right", "length_cm": 1}, diet=2),
    ]


def _names_of(Animal, resp):
    return [Animal.FromString(x.item.value).name for x in resp.results]


def check_zoo_search(coll, Animal):
    """Searches on the fields of zoo.Animal over the three _zoo_animals records."""
    def names(**kw):
        return sorted(_names_of(Animal, coll.search(**kw)))

    assert names(filters={"legs": flt(OP.OP_GREATER_THAN, 2)}) == ["spider", "zebra"]
    assert names(filters={"name": flt(OP.OP_EQUALS, "bird")}) == ["bird"]
    assert names(filters={"tags": flt(OP.OP_CONTAINS, "web")}) == ["spider"]
    assert names(filters={"front.side": flt(OP.OP_EQUALS, "left")}) == ["zebra"]
    assert names(filters={"labels.habitat": flt(OP.OP_EQUALS, "savanna")}) == ["zebra"]
    assert names(filters={"diet": flt(OP.OP_EQUALS, "CARNIVORE")}) == ["bird", "spider"]
    assert names(filters={"front": flt(OP.OP_EXISTS)}) == ["spider", "zebra"]
    assert names(filters={"legs": flt(OP.OP_IN, [2, 8])}) == ["bird", "spider"]
    assert names(filters={"diet": flt(OP.OP_EQUALS, "CARNIVORE"), "legs": flt(OP.OP_GREATER_THAN, 4)}) == ["spider"]
    assert names(full_text="stripes") == ["zebra"]
    assert names(full_text="feathers") == ["bird"]
    assert names(full_text="savanna") == ["zebra"]
    assert names(full_text="web", filters={"legs": flt(OP.OP_LESS_THAN, 4)}) == []
    r = coll.search(order_by="legs", ascending=True)
    assert _names_of(Animal, r) == ["bird", "zebra", "spider"] and r.total_count == 3


def test_registered_type_collection(reg, api):
    ns = uniq("zoo")
    reg.proto(ns, animal_file())
    cls = Classes(animal_file())
    Animal, Other = cls["zoo.Animal"], cls["zoo.Other"]
    coll = api.coll("zoo.Animal", ns=ns, indexed=["name", "legs", "front.side"])
    d = coll.describe().collection_definition
    assert d.message_type.message_name == "zoo.Animal"
    animals = _zoo_animals(Animal)
    animals[0].all_legs.add(side="l", length_cm=80)
    animals[0].all_legs.add(side="r", length_cm=81)
    for a in animals:
        coll.put(pack(a), id=a.name)
    for a in animals:
        item = coll.get(a.name)
        assert item.type_url == TYPE_PREFIX + "zoo.Animal"
        assert item.value == a.SerializeToString()
        assert Animal.FromString(item.value) == a
    check_zoo_search(coll, Animal)
    assert [Animal.FromString(x.value).name for x in coll.list(filter={"name": "bird"}).items] == ["bird"]
    # A field the type does not have is refused like on a compiled-in type.
    expect_error(C.INVALID_ARGUMENT, api.svc.Search,
                     coll.req(cs_pb2.SearchRequest, filters={"wings": flt(OP.OP_EQUALS, 2)}), mentions=["wings"])
    # An update with a mask goes through the JSON form of the registered type.
    coll.update("bird", pack(Animal(legs=3, tags=["ignored"])), ["legs"])
    want = animals[1]
    want.legs = 3
    assert Animal.FromString(coll.get("bird").value) == want
    # A record of another registered type does not go in.
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Create, coll.req(cs_pb2.CreateRequest, item=pack(Other(note="x"))))


def test_types_isolated_between_namespaces(reg, api):
    a, b = uniq("iso-a"), uniq("iso-b")
    reg.proto(a, animal_file())
    garden = proto_file("garden/plant.proto", package="garden", messages=[message("Plant", field("name", 1, STRING))])
    reg.proto(b, garden)
    for ns, t in ((b, "zoo.Animal"), (b, "zoo.Animal.Leg"), (a, "garden.Plant"), (DEFAULT_NS, "zoo.Animal"),
                  (DEFAULT_NS, "garden.Plant")):
        e = unknown_type(api, ns, t)
        never = unknown_type(api, ns, "zoo.NeverRegistered")
        assert e.details().replace(t, "<T>") == never.details().replace("zoo.NeverRegistered", "<T>"), \
            "a type of another namespace is refused differently from an unknown type"
    expect_error(C.INVALID_ARGUMENT, api.repo.CreateCollection, create_collection_req(b, uniq("t"), "Animal"))
    api.coll("zoo.Animal", ns=a)
    api.coll("garden.Plant", ns=b)
    # The same file name in b, incompatible with a's: no conflict across namespaces.
    other = reg.proto(b, changed(animal_file(), _retype(2, STRING)))
    assert other.proto_id != reg.proto(a, animal_file()).proto_id
    coll_b = api.coll("zoo.Animal", ns=b, indexed=["legs"])
    coll_b.put(pack(Classes(changed(animal_file(), _retype(2, STRING)))["zoo.Animal"](legs="four")), id="x")
    assert coll_b.search(filters={"legs": flt(OP.OP_EQUALS, "four")}).total_count == 1


# =======================================================================================
# RegisterService, LookupService, ValidateMethod, ListServices


def test_register_service_and_lookup(reg, api):
    ns = uniq("svc")
    reg.proto(ns, animal_file())
    fd = feeder_file()
    r = reg.service(ns, fd.service[0], fd)
    assert sorted(r.registered_methods) == sorted(FEEDER_METHODS)
    s = reg.lookup(ns, "zoo.Feeder")
    assert (s.id, s.namespace, s.service_name) == (r.service_id, ns, "zoo.Feeder")
    assert sorted(s.method_names) == sorted(FEEDER_METHODS)
    assert method_shapes(s.service_descriptor) == method_shapes(fd.service[0])
    assert s.metadata.created_at.seconds > 0
    assert s.metadata.updated_at.ToNanoseconds() >= s.metadata.created_at.ToNanoseconds()
    for m in FEEDER_METHODS:
        v = reg.validate(ns, "zoo.Feeder", m)
        assert v.is_valid, (m, v.message)
    assert service_names(reg.list(ns)) == ["zoo.Feeder"]
    # The file's messages were registered as by RegisterProto.
    api.coll("zoo.FeedRequest", ns=ns)
    # The same again: nothing changes.
    again = reg.service(ns, fd.service[0], fd)
    assert again.service_id == r.service_id
    assert reg.lookup(ns, "zoo.Feeder").metadata.created_at == s.metadata.created_at


def test_register_service_again_replaces_methods(reg):
    ns = uniq("resvc")
    reg.proto(ns, animal_file())
    fd = feeder_file()
    first = reg.service(ns, fd.service[0], fd)
    s1 = reg.lookup(ns, "zoo.Feeder")
    # Without a file the name is the full name.
    sd = service("zoo.Feeder", method("Feed", ".zoo.FeedRequest", ".zoo.FeedReply"),
                 method("Count", ".zoo.FeedRequest", ".zoo.FeedReply", server_streaming=True))
    second = reg.service(ns, sd)
    assert second.service_id == first.service_id
    assert sorted(second.registered_methods) == ["Count", "Feed"]
    s2 = reg.lookup(ns, "zoo.Feeder")
    assert s2.id == s1.id and sorted(s2.method_names) == ["Count", "Feed"]
    assert s2.metadata.created_at == s1.metadata.created_at
    assert s2.metadata.updated_at.ToNanoseconds() >= s1.metadata.updated_at.ToNanoseconds()
    assert reg.validate(ns, "zoo.Feeder", "Count").is_valid
    v = reg.validate(ns, "zoo.Feeder", "Herd")
    assert not v.is_valid and v.message
    assert service_names(reg.list(ns)) == ["zoo.Feeder"]


def test_register_service_without_file(reg):
    ns = uniq("nofile")
    reg.proto(ns, animal_file())
    reg.proto(ns, feeder_messages())
    sd = service("zoo.Pantry", method("Stock", ".zoo.FeedRequest", ".zoo.FeedReply"),
                 method("Count", ".zoo.Animal", ".google.protobuf.Empty"),
                 method("Info", ".collector.MetaRequest", ".collector.MetaResponse"))
    r = reg.service(ns, sd)
    assert sorted(r.registered_methods) == ["Count", "Info", "Stock"]
    s = reg.lookup(ns, "zoo.Pantry")
    assert s.service_name == "zoo.Pantry" and s.id == r.service_id


def test_register_service_relative_types(reg):
    ns = uniq("rel")
    reg.proto(ns, animal_file())
    fd = feeder_file(relative=True)
    r = reg.service(ns, fd.service[0], fd)
    assert sorted(r.registered_methods) == sorted(FEEDER_METHODS)
    assert sorted(reg.lookup(ns, "zoo.Feeder").method_names) == sorted(FEEDER_METHODS)


def _sd(edit):
    sd = feeder_file().service[0]
    edit(sd)
    return sd


SERVICE_REFUSALS = {
    "no-descriptor": None,
    "empty-name": _sd(lambda sd: setattr(sd, "name", "")),
    "no-methods": _sd(lambda sd: sd.ClearField("method")),
    "method-name": _sd(lambda sd: setattr(sd.method[1], "name", "")),
    # One type without the other (a method without either is admitted by name: upstream).
    "input-type": _sd(lambda sd: setattr(sd.method[0], "input_type", "")),
    "output-type": _sd(lambda sd: setattr(sd.method[2], "output_type", "")),
}


@pytest.mark.parametrize("with_file", [True, False], ids=["file", "no-file"])
@pytest.mark.parametrize("kind", list(SERVICE_REFUSALS))
def test_register_service_refusals(reg, kind, with_file):
    ns = uniq("bad-svc")
    reg.proto(ns, animal_file())
    if with_file:
        fd = feeder_file()
    else:
        fd = None
        reg.proto(ns, feeder_messages())  # the method types resolve: only the service is wrong
    sd = copy.deepcopy(SERVICE_REFUSALS[kind])
    if sd is not None and not with_file and sd.name:
        sd.name = "zoo." + sd.name
    expect_error(C.INVALID_ARGUMENT, reg.stub.RegisterService, reg.service_req(ns, sd, fd))
    expect_error(C.NOT_FOUND, reg.stub.LookupService, registry_pb2.LookupServiceRequest(namespace=ns, service_name="zoo.Feeder"))


UNRESOLVED_METHODS = [
    ("input", "Feed", method("Feed", ".zoo.Nope", ".zoo.FeedReply"), "zoo.Nope"),
    ("output", "Feed", method("Feed", ".zoo.FeedRequest", ".zoo.Gone"), "zoo.Gone"),
    ("relative", "Watch", method("Watch", "Missing", ".zoo.FeedReply", server_streaming=True), "Missing"),
    ("enum-not-message", "Feed", method("Feed", ".zoo.Diet", ".zoo.FeedReply"), "zoo.Diet"),
]


@pytest.mark.parametrize("m,bad_type", [(m, t) for _, _, m, t in UNRESOLVED_METHODS],
                         ids=[i for i, _, _, _ in UNRESOLVED_METHODS])
def test_register_service_unresolved_method_type(reg, m, bad_type):
    ns = uniq("unres-svc")
    reg.proto(ns, animal_file())
    reg.proto(ns, feeder_messages())
    sd = service("zoo.Feeder", method("Herd", ".zoo.Animal", ".zoo.FeedReply", client_streaming=True), m)
    expect_error(C.INVALID_ARGUMENT, reg.stub.RegisterService, reg.service_req(ns, sd), mentions=[m.name, bad_type])
    expect_error(C.NOT_FOUND, reg.stub.LookupService, registry_pb2.LookupServiceRequest(namespace=ns, service_name="zoo.Feeder"))


def test_register_service_relative_types_from_nested_package(reg):
    """Relative names resolve as protoc does: zoo.staff.X, then zoo.X, then X. A name found
    nowhere is refused (this once looped for ever on the second package part)."""
    ns = uniq("nested-pkg")
    reg.proto(ns, animal_file())
    ok = proto_file("zoo/staff.proto", package="zoo.staff", deps=[ANIMAL_FILE],
                    services=[service("Keeper", method("Check", "Animal", ".zoo.Animal"))])
    assert list(reg.service(ns, ok.service[0], ok).registered_methods) == ["Check"]
    # The service apart from its file: the registry resolves its types itself.
    context = proto_file("zoo/staff2.proto", package="zoo.staff", deps=[ANIMAL_FILE])
    sd = service("Keeper2", method("Check", "Animal", ".zoo.Animal"))
    assert list(reg.service(ns, sd, context).registered_methods) == ["Check"]
    bad = service("Keeper3", method("Check", "Nowhere", ".zoo.Animal"))
    expect_error(C.INVALID_ARGUMENT, reg.stub.RegisterService,
                 registry_pb2.RegisterServiceRequest(namespace=ns, service_descriptor=bad,
                                                     file_descriptor=context),
                 mentions=["Nowhere"])


def test_register_service_types_of_other_namespace_do_not_resolve(reg):
    a, b = uniq("svc-a"), uniq("svc-b")
    reg.zoo(a)
    sd = service("zoo.Feeder", method("Feed", ".zoo.FeedRequest", ".zoo.FeedReply"))
    expect_error(C.INVALID_ARGUMENT, reg.stub.RegisterService, reg.service_req(b, sd), mentions=["Feed", "zoo.FeedRequest"])


def test_register_service_file_follows_register_proto_rules(reg):
    ns = uniq("svc-file")
    # The file's import is missing.
    fd = feeder_file()
    expect_error(C.INVALID_ARGUMENT, reg.stub.RegisterService, reg.service_req(ns, fd.service[0], fd), mentions=[ANIMAL_FILE])
    # An unresolved field type in the file.
    reg.proto(ns, animal_file())
    bad = changed(fd, lambda f: msg_of(f, "FeedRequest").field.append(field("x", 3, MESSAGE, ".zoo.Lost")))
    expect_error(C.INVALID_ARGUMENT, reg.stub.RegisterService, reg.service_req(ns, bad.service[0], bad), mentions=["zoo.Lost"])
    # An incompatible change of the file.
    reg.service(ns, fd.service[0], fd)
    inc = changed(fd, lambda f: setattr(field_of(msg_of(f, "FeedRequest"), 2), "type", STRING))
    e = expect_error(C.FAILED_PRECONDITION, reg.stub.RegisterService, reg.service_req(ns, inc.service[0], inc))
    names_field(e, ns, "zoo.FeedRequest", 2, "grams")


@pytest.mark.parametrize("edit", ["input", "output", "user-type"])
def test_register_node_service_with_other_types_refused(reg, edit):
    ns = uniq("nodesvc")
    reg.proto(ns, animal_file())
    sd = compiled_service(collection_server_pb2, "CollectionService")
    get = next(m for m in sd.method if m.name == "Get")
    if edit == "input":
        get.input_type = ".collector.CreateRequest"
    elif edit == "output":
        get.output_type = ".collector.ListResponse"
    else:
        get.input_type = ".zoo.Animal"
    expect_error(C.FAILED_PRECONDITION, reg.stub.RegisterService, reg.service_req(ns, sd))
    expect_error(C.NOT_FOUND, reg.stub.LookupService,
                 registry_pb2.LookupServiceRequest(namespace=ns, service_name="collector.CollectionService"))


def test_lookup_service_errors(reg):
    ns = uniq("look")
    reg.zoo(ns)
    expect_error(C.NOT_FOUND, reg.stub.LookupService, registry_pb2.LookupServiceRequest(namespace=ns, service_name="zoo.Nope"))
    expect_error(C.NOT_FOUND, reg.stub.LookupService,
                 registry_pb2.LookupServiceRequest(namespace=ns, service_name="collector.CollectionService"))
    expect_error(C.NOT_FOUND, reg.stub.LookupService,
                 registry_pb2.LookupServiceRequest(namespace=uniq("nothing"), service_name="zoo.Feeder"))
    expect_error(C.NOT_FOUND, reg.stub.LookupService,
                 registry_pb2.LookupServiceRequest(namespace=DEFAULT_NS, service_name="zoo.Feeder"))
    expect_error(C.INVALID_ARGUMENT, reg.stub.LookupService, registry_pb2.LookupServiceRequest(namespace=ns))
    # An empty namespace field is the caller's: here, the default namespace.
    assert reg.lookup("", "collector.CollectionService").namespace == DEFAULT_NS


def test_validate_method(reg):
    ns = uniq("val")
    reg.zoo(ns)
    for svc, m in (("collector.CollectionService", "Get"), ("collector.CollectionRepo", "PushCollection"),
                   ("grpc.health.v1.Health", "Check"), ("collector.CollectorRegistry", "ValidateMethod")):
        v = reg.validate(DEFAULT_NS, svc, m)
        assert v.is_valid, (svc, m, v.message)
    assert reg.validate("", "collector.CollectionService", "Get").is_valid
    assert reg.validate(ns, "zoo.Feeder", "Chat").is_valid
    for vns, svc, m in ((DEFAULT_NS, "collector.CollectionService", "Nope"), (DEFAULT_NS, "zoo.Nope", "Get"),
                        (DEFAULT_NS, "zoo.Feeder", "Feed"), (ns, "collector.CollectionService", "Get"),
                        (ns, "zoo.Feeder", "Nope"), (uniq("nothing"), "collector.CollectionService", "Get")):
        v = reg.validate(vns, svc, m)
        assert not v.is_valid, (vns, svc, m)
        assert v.message.strip(), f"is_valid false without a message for {vns} {svc} {m}"
    for svc, m in (("", "Get"), ("collector.CollectionService", ""), ("", "")):
        expect_error(C.INVALID_ARGUMENT, reg.stub.ValidateMethod,
                     registry_pb2.ValidateMethodRequest(namespace=DEFAULT_NS, service_name=svc, method_name=m))


NODE_SERVICE_STUBS = {
    "collector.CollectionService": (collection_server_pb2, "CollectionService"),
    "collector.CollectionRepo": (collection_repo_pb2, "CollectionRepo"),
    "collector.CollectorRegistry": (registry_pb2, "CollectorRegistry"),
    "collector.CollectiveDispatcher": (dispatcher_pb2, "CollectiveDispatcher"),
    "collector.CollectiveWorker": (worker_pb2, "CollectiveWorker"),
    "collector.CollectorConsole": (console_pb2, "CollectorConsole"),
    "collector.CollectorAuth": (auth_pb2, "CollectorAuth"),
}


def check_node_services(reg, ns):
    services = reg.list(ns)
    assert service_names(services) == NODE_SERVICES
    for s in services:
        assert s.namespace == ns and s.id == f"{ns}/{s.service_name}", s
        assert s.method_names, s.service_name
        assert reg.lookup(ns, s.service_name).id == s.id
        if s.service_name in NODE_SERVICE_STUBS:
            sd = compiled_service(*NODE_SERVICE_STUBS[s.service_name])
            assert sorted(s.method_names) == sorted(m.name for m in sd.method), s.service_name
            assert sorted(method_shapes(s.service_descriptor)) == sorted(method_shapes(sd)), s.service_name
    assert "Check" in reg.lookup(ns, "grpc.health.v1.Health").method_names
    for r in ("grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"):
        assert list(reg.lookup(ns, r).method_names) == ["ServerReflectionInfo"]
    return services


def test_node_services_registered_at_start(reg):
    check_node_services(reg, DEFAULT_NS)


def test_list_services(reg):
    a, b = uniq("list-a"), uniq("list-b")
    reg.zoo(a)
    reg.service(a, service("zoo.Aviary", method("Count", ".zoo.Animal", ".zoo.FeedReply")))
    reg.service(a, compiled_service(collection_server_pb2, "CollectionService"))
    garden = proto_file("garden/g.proto", package="garden",
                        messages=[message("Seed", field("kind", 1, STRING))],
                        services=[service("Gardener", method("Plant", ".garden.Seed", ".garden.Seed"))])
    reg.service(b, garden.service[0], garden)
    la = reg.list(a)
    assert service_names(la) == ["collector.CollectionService", "zoo.Aviary", "zoo.Feeder"]
    assert all(s.namespace == a for s in la)
    assert service_names(reg.list(b)) == ["garden.Gardener"]
    everything = {(s.namespace, s.service_name): s for s in reg.list("")}
    for s in la + reg.list(b) + reg.list(DEFAULT_NS):
        assert everything.get((s.namespace, s.service_name)) == s, (s.namespace, s.service_name)
    # A namespace with nothing registered has no services (upstream: an empty list).
    assert reg.list(uniq("nothing")) == []
    # Types alone are no services.
    c = uniq("list-c")
    reg.proto(c, animal_file())
    assert reg.list(c) == []


def test_services_isolated_between_namespaces(reg, api):
    a, b = uniq("siso-a"), uniq("siso-b")
    reg.zoo(a)
    garden = proto_file("garden/g.proto", package="garden",
                        messages=[message("Seed", field("kind", 1, STRING))],
                        services=[service("Gardener", method("Plant", ".garden.Seed", ".garden.Seed"))])
    reg.service(b, garden.service[0], garden)
    for ns, own, own_m, theirs, their_m, their_type in ((a, "zoo.Feeder", "Feed", "garden.Gardener", "Plant", "garden.Seed"),
                                                        (b, "garden.Gardener", "Plant", "zoo.Feeder", "Feed", "zoo.FeedRequest")):
        assert reg.lookup(ns, own).namespace == ns
        assert reg.validate(ns, own, own_m).is_valid
        expect_error(C.NOT_FOUND, reg.stub.LookupService, registry_pb2.LookupServiceRequest(namespace=ns, service_name=theirs))
        assert not reg.validate(ns, theirs, their_m).is_valid
        assert theirs not in service_names(reg.list(ns))
        unknown_type(api, ns, their_type)
        path = f"/{theirs}/{their_m}"
        expect_raw_error(C.UNIMPLEMENTED, reg.ch, path, ns=ns, mentions=[path, ns])


# =======================================================================================
# Validation of calls


UNKNOWN_PATHS = {k: f"/zoo.Nope/{m}" for k, m in zip(KINDS, ("Feed", "Watch", "Herd", "Chat"))}


@pytest.mark.parametrize("where", ["default", "header"])
@pytest.mark.parametrize("kind", KINDS)
def test_unregistered_method_unimplemented(reg, kind, where):
    ns = uniq("unreg") if where == "header" else None
    name = ns or DEFAULT_NS
    path = UNKNOWN_PATHS[kind]
    expect_raw_error(C.UNIMPLEMENTED, reg.ch, path, kind, ns, mentions=[path, name])
    # A service the node has, with a method it has not.
    path = "/collector.CollectionService/Nope"
    expect_raw_error(C.UNIMPLEMENTED, reg.ch, path, kind, ns, mentions=[path, name])


FEEDER_KINDS = dict(zip(KINDS, ("Feed", "Watch", "Herd", "Chat")))


@pytest.mark.parametrize("kind", KINDS)
def test_registered_user_service_not_served(reg, kind):
    ns = uniq("unserved")
    reg.zoo(ns)
    path = f"/zoo.Feeder/{FEEDER_KINDS[kind]}"
    e = expect_raw_error(C.UNIMPLEMENTED, reg.ch, path, kind, ns, mentions=[ns])
    d = e.details().lower()
    assert "registered" in d and "not served" in d, e.details()
    # In the default namespace it is not registered at all.
    expect_raw_error(C.UNIMPLEMENTED, reg.ch, path, kind, None, mentions=[path, DEFAULT_NS])


NODE_PATHS = [
    ("unary_unary", "/collector.CollectionService/Get"),
    ("unary_unary", "/collector.CollectionService/Meta"),
    ("unary_unary", "/collector.CollectorRegistry/ListServices"),
    ("unary_unary", "/grpc.health.v1.Health/Check"),
    ("stream_unary", "/collector.CollectionRepo/PushCollection"),
    ("unary_stream", "/collector.CollectionRepo/PullCollection"),
    ("stream_stream", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
]


def test_node_service_served_in_namespace_once_registered(reg, api):
    ns = uniq("hdrns")
    coll = api.coll("grpc.testing.SimpleRequest", ns=ns)  # no header: the default namespace
    rid = coll.put(messages_pb2.SimpleRequest(response_size=1))
    # Through the header, ns has nothing registered: every node service is refused.
    for kind, path in NODE_PATHS:
        expect_raw_error(C.UNIMPLEMENTED, reg.ch, path, kind, ns, mentions=[path, ns])
    expect_error(C.UNIMPLEMENTED, api.svc.Get, cs_pb2.GetRequest(collection_name=coll.name, id=rid), hdr(ns),
                 mentions=["/collector.CollectionService/Get", ns])
    # ...before its handler runs: the record is not created.
    create = cs_pb2.CreateRequest(collection_name=coll.name, item=pack(messages_pb2.SimpleRequest(response_size=2)))
    expect_error(C.UNIMPLEMENTED, api.svc.Create, create, hdr(ns), mentions=[ns])
    assert coll.describe().record_count == 1
    # Registered in ns with the compiled-in descriptor: served there.
    sd = compiled_service(collection_server_pb2, "CollectionService")
    r = reg.service(ns, sd)
    assert sorted(r.registered_methods) == sorted(m.name for m in sd.method)
    got = assert_ok(call(api.svc.Get, cs_pb2.GetRequest(collection_name=coll.name, id=rid), hdr(ns)))
    assert got.item.value == messages_pb2.SimpleRequest(response_size=1).SerializeToString()
    created = assert_ok(call(api.svc.Create, create, hdr(ns)))
    assert coll.get(created.id).value == messages_pb2.SimpleRequest(response_size=2).SerializeToString()
    assert_ok(call(api.svc.Meta, cs_pb2.MetaRequest(), hdr(ns)))
    # Only that service: the repo is still refused in ns.
    expect_error(C.UNIMPLEMENTED, api.repo.Route, repo_pb2.RouteRequest(collection=nn(ns, coll.name)), hdr(ns),
                 mentions=["/collector.CollectionRepo/Route", ns])
    # Registered again with fewer methods: the others are refused from then on.
    keep = [m for m in sd.method if m.name in ("Get", "Meta")]
    del sd.method[:]
    sd.method.extend(keep)
    assert reg.service(ns, sd).service_id == r.service_id
    assert_ok(call(api.svc.Get, cs_pb2.GetRequest(collection_name=coll.name, id=rid), hdr(ns)))
    expect_error(C.UNIMPLEMENTED, api.svc.Create, create, hdr(ns), mentions=["/collector.CollectionService/Create", ns])
    # Without the header (the default namespace) everything is as it was.
    assert_ok(call(api.svc.Create, cs_pb2.CreateRequest(namespace=ns, collection_name=coll.name,
                                                        item=pack(messages_pb2.SimpleRequest(response_size=3)))))
    assert coll.describe().record_count == 3


@pytest.mark.parametrize("bad", ["../x", "x" * 64, "a/b"])
def test_invalid_header_namespace(reg, api, bad):
    expect_error(C.INVALID_ARGUMENT, api.svc.Meta, cs_pb2.MetaRequest(), hdr(bad))
    expect_raw_error(C.INVALID_ARGUMENT, reg.ch, "/zoo.Nope/Feed", ns=bad)
    expect_raw_error(C.INVALID_ARGUMENT, reg.ch, "/collector.CollectionRepo/PushCollection", "stream_unary", ns=bad)


def test_registry_through_header_namespace(reg, api):
    ns = uniq("hreg")
    expect_error(C.UNIMPLEMENTED, reg.stub.ListServices, registry_pb2.ListServicesRequest(namespace=ns), hdr(ns),
                 mentions=["/collector.CollectorRegistry/ListServices", ns])
    reg.service(ns, compiled_service(registry_pb2, "CollectorRegistry"))
    # Served in ns now; an empty namespace field means the header's namespace.
    reg.proto("", animal_file(), metadata=hdr(ns))
    api.coll("zoo.Animal", ns=ns)
    unknown_type(api, DEFAULT_NS, "zoo.Animal")
    fd = feeder_file()
    r = reg.service("", fd.service[0], fd, metadata=hdr(ns))
    s = reg.lookup("", "zoo.Feeder", metadata=hdr(ns))
    assert (s.namespace, s.id) == (ns, r.service_id)
    assert reg.validate("", "zoo.Feeder", "Feed", metadata=hdr(ns)).is_valid
    assert service_names(reg.list(ns, metadata=hdr(ns))) == ["collector.CollectorRegistry", "zoo.Feeder"]
    # Without the header, the empty field is the default namespace.
    expect_error(C.NOT_FOUND, reg.stub.LookupService, registry_pb2.LookupServiceRequest(service_name="zoo.Feeder"))


def test_node_default_namespace_flag(servers):
    n = servers.node("--namespace", "teamx")
    reg, api = Reg(n), Api(n)
    check_node_services(reg, "teamx")
    assert reg.list(DEFAULT_NS) == []
    # Empty namespace fields and calls without a header are teamx's.
    reg.proto("", animal_file())
    api.coll("zoo.Animal", ns="teamx")
    unknown_type(api, DEFAULT_NS, "zoo.Animal")
    fd = feeder_file()
    reg.service("", fd.service[0], fd)
    assert reg.lookup("teamx", "zoo.Feeder").namespace == "teamx"
    assert reg.lookup("", "zoo.Feeder").namespace == "teamx"
    expect_raw_error(C.UNIMPLEMENTED, reg.ch, "/zoo.Nope/Feed", mentions=["/zoo.Nope/Feed", "teamx"])
    e = expect_raw_error(C.UNIMPLEMENTED, reg.ch, "/zoo.Feeder/Feed", mentions=["teamx"])
    assert "not served" in e.details().lower(), e.details()
    # The namespace "default" has no node services on this node.
    expect_raw_error(C.UNIMPLEMENTED, reg.ch, "/collector.CollectionService/Meta", ns=DEFAULT_NS,
                     mentions=["/collector.CollectionService/Meta", DEFAULT_NS])


def test_no_validation(servers):
    n = servers.node("--no-validation")
    reg, api = Reg(n), Api(n)
    ns = uniq("noval")
    coll = api.coll("grpc.testing.SimpleRequest", ns=ns)
    item = pack(messages_pb2.SimpleRequest(response_size=5))
    # A header naming a namespace with nothing registered does not stop node services.
    assert_ok(call(api.svc.Meta, cs_pb2.MetaRequest(), hdr(ns)))
    created = assert_ok(call(api.svc.Create, cs_pb2.CreateRequest(collection_name=coll.name, item=item), hdr(ns)))
    got = assert_ok(call(api.svc.Get, cs_pb2.GetRequest(collection_name=coll.name, id=created.id), hdr(ns)))
    assert got.item.value == item.value
    assert api.route("", coll.name, metadata=hdr(ns)).collection.namespace == ns
    assert reg.list(DEFAULT_NS, metadata=hdr(ns))
    # Unknown paths are still UNIMPLEMENTED, and so are registered services the node does not serve.
    for kind, path in UNKNOWN_PATHS.items():
        expect_raw_error(C.UNIMPLEMENTED, reg.ch, path, kind, ns)
        expect_raw_error(C.UNIMPLEMENTED, reg.ch, path, kind)
    reg.zoo(ns)
    for kind, m in FEEDER_KINDS.items():
        expect_raw_error(C.UNIMPLEMENTED, reg.ch, f"/zoo.Feeder/{m}", kind, ns)
    # The registry itself still answers as with validation on.
    assert reg.validate(ns, "zoo.Feeder", "Feed").is_valid
    assert not reg.validate(ns, "collector.CollectionService", "Get").is_valid
    check_node_services(reg, DEFAULT_NS)


# =======================================================================================
# Server reflection of registered services and files (on a --no-validation node, so that
# reflection answers in a namespace where it is not registered)


class Reflect:
    """One-question reflection streams in a namespace (None: no header)."""

    def __init__(self, node, ver):
        self.stub = ver.grpc.ServerReflectionStub(node.channel())
        self.pb = ver.pb2

    def ask(self, ns, **kw):
        req = self.pb.ServerReflectionRequest(**kw)
        resps = list(self.stub.ServerReflectionInfo(iter([req]), timeout=30, metadata=hdr(ns) if ns else None))
        assert len(resps) == 1, resps
        return resps[0]


@pytest.mark.parametrize("ver", VERSIONS, ids=repr)
def test_reflection_of_registered(servers, ver):
    n = servers.node("--no-validation")
    reg = Reg(n)
    ns, other = uniq("refl"), uniq("refl-other")
    reg.zoo(ns)
    reg.proto(other, animal_file())
    refl = Reflect(n, ver)

    listed = refl.ask(ns, list_services="")
    assert listed.WhichOneof("message_response") == "list_services_response", listed
    assert {s.name for s in listed.list_services_response.service} == {"zoo.Feeder"}
    default = {s.name for s in refl.ask(None, list_services="").list_services_response.service}
    assert set(NODE_SERVICES) <= default and "zoo.Feeder" not in default
    assert "zoo.Feeder" not in {s.name for s in refl.ask(other, list_services="").list_services_response.service}

    for symbol, file in (("zoo.Feeder", FEEDER_FILE), ("zoo.Feeder.Herd", FEEDER_FILE),
                         ("zoo.FeedRequest", FEEDER_FILE), ("zoo.Animal.Leg", ANIMAL_FILE), ("zoo.Diet", ANIMAL_FILE),
                         ("zoo.Keeper", KEEPER_FILE)):
        fds = files_of(refl.ask(ns, file_containing_symbol=symbol))
        assert fds[0].name == file, symbol
        check_closure(fds)
        load_pool(fds)
    pool = load_pool(files_of(refl.ask(ns, file_containing_symbol="zoo.Feeder")))
    svc = pool.FindServiceByName("zoo.Feeder")
    assert [m.name for m in svc.methods] == FEEDER_METHODS
    herd = svc.FindMethodByName("Herd")
    assert herd.input_type.full_name == "zoo.Animal" and herd.client_streaming
    assert [f.name for f in herd.input_type.fields][:3] == ["name", "legs", "tags"]

    fds = files_of(refl.ask(ns, file_by_filename=KEEPER_FILE))
    assert fds[0].name == KEEPER_FILE
    check_closure(fds)
    assert {ANIMAL_FILE, "google/protobuf/timestamp.proto", "collector/common.proto"} <= {f.name for f in fds}
    keeper = load_pool(fds).FindMessageTypeByName("zoo.Keeper")
    assert keeper.fields_by_name["animals"].message_type.full_name == "zoo.Animal"

    # Not in the default namespace, and only the types in the other one.
    for kw in ({"file_containing_symbol": "zoo.Feeder"}, {"file_by_filename": FEEDER_FILE},
               {"file_containing_symbol": "zoo.Animal"}):
        r = refl.ask(None, **kw)
        assert r.WhichOneof("message_response") == "error_response", (kw, r)
        assert r.error_response.error_code == REFLECTION_NOT_FOUND
    r = refl.ask(other, file_containing_symbol="zoo.Feeder")
    assert r.error_response.error_code == REFLECTION_NOT_FOUND, r
    assert files_of(refl.ask(other, file_containing_symbol="zoo.Animal"))[0].name == ANIMAL_FILE


# =======================================================================================
# Persistence


def _v2_without_all_legs(fd):
    a = msg_of(fd, "Animal")
    remove_field(a, 7)
    a.field.append(field("weight", 8, DOUBLE))


def test_restart_keeps_registrations(servers):
    n1 = servers.node()
    reg, api = Reg(n1), Api(n1)
    a, b = uniq("keep-a"), uniq("keep-b")
    ra, rk, rs = reg.zoo(a)
    v2fd = changed(animal_file(), _v2_without_all_legs)
    r2 = reg.proto(a, v2fd)
    reg.service(a, compiled_service(collection_server_pb2, "CollectionService"))
    rb = reg.proto(b, animal_file())
    cls = Classes(v2fd, keeper_file())
    Animal, Keeper = cls["zoo.Animal"], cls["zoo.Keeper"]
    zoo = api.coll("zoo.Animal", ns=a, indexed=["legs", "front.side"])
    for x in _zoo_animals(Animal):
        zoo.put(pack(x), id=x.name)
    zoo.put(pack(Animal(name="whale", legs=0, weight=150000.0, tags=["huge"])), id="whale")
    others = api.coll("zoo.Other", ns=a)
    keepers = api.coll("zoo.Keeper", ns=a)
    ann = Keeper(name="ann", animals=[Animal(name="zed", weight=300.0)], favourite=2)
    keepers.put(pack(ann), id="ann")
    listed = {ns: reg.list(ns) for ns in (a, DEFAULT_NS)}
    everything = reg.list("")
    records = zoo.snapshot()
    n1.stop(signal.SIGTERM)

    n2 = servers.node(data_dir=n1.data_dir)
    reg, api = Reg(n2), Api(n2)
    # Services: the same entries, the same ids; the node's own are not doubled.
    assert reg.list(a) == listed[a]
    assert service_names(listed[a]) == ["collector.CollectionService", "zoo.Feeder"]
    assert reg.lookup(a, "zoo.Feeder").id == rs.service_id
    after_default = check_node_services(reg, DEFAULT_NS)
    assert [s.id for s in after_default] == [s.id for s in listed[DEFAULT_NS]]
    assert {(s.namespace, s.service_name, s.id) for s in reg.list("")} == \
        {(s.namespace, s.service_name, s.id) for s in everything}
    assert reg.list(b) == []  # types only: no services
    # Files: the same bytes again are the same registrations.
    assert reg.proto(a, v2fd).proto_id == r2.proto_id
    assert reg.proto(a, keeper_file()).proto_id == rk.proto_id
    assert reg.proto(b, animal_file()).proto_id == rb.proto_id
    # The version history too: field 7 (v1 only) may not come back as another type, and a
    # message a collection uses may not go.
    back = changed(v2fd, lambda fd: msg_of(fd, "Animal").field.append(field("all_legs", 7, STRING)))
    e = expect_error(C.FAILED_PRECONDITION, reg.stub.RegisterProto, reg.proto_req(a, back))
    names_field(e, a, "zoo.Animal", 7, "all_legs")
    expect_error(C.FAILED_PRECONDITION, reg.stub.RegisterProto,
                 reg.proto_req(a, changed(v2fd, lambda fd: remove_message(fd, "Other"))), mentions=["zoo.Other"])
    # Validation: as before.
    assert reg.validate(a, "zoo.Feeder", "Chat").is_valid
    assert not reg.validate(b, "zoo.Feeder", "Chat").is_valid
    e = expect_raw_error(C.UNIMPLEMENTED, reg.ch, "/zoo.Feeder/Feed", ns=a, mentions=[a])
    assert "not served" in e.details().lower(), e.details()
    expect_raw_error(C.UNIMPLEMENTED, reg.ch, "/zoo.Nope/Feed", ns=a, mentions=["/zoo.Nope/Feed", a])
    expect_raw_error(C.UNIMPLEMENTED, reg.ch, "/collector.CollectionRepo/Route", ns=a,
                     mentions=["/collector.CollectionRepo/Route", a])
    got = assert_ok(call(api.svc.Get, cs_pb2.GetRequest(collection_name=zoo.name, id="zebra"), hdr(a)))
    assert Animal.FromString(got.item.value).name == "zebra"
    # Records and the types that read them.
    zoo2 = Coll(api, a, zoo.name, "zoo.Animal")
    assert zoo2.snapshot() == records
    assert zoo2.get("whale").type_url == TYPE_PREFIX + "zoo.Animal"
    def names(**kw):
        return sorted(_names_of(Animal, zoo2.search(**kw)))
    assert names(filters={"legs": flt(OP.OP_GREATER_THAN, 2)}) == ["spider", "zebra"]
    assert names(filters={"weight": flt(OP.OP_GREATER_THAN, 1000)}) == ["whale"]
    assert names(filters={"labels.habitat": flt(OP.OP_EQUALS, "savanna")}) == ["zebra"]
    assert names(filters={"diet": flt(OP.OP_EQUALS, "CARNIVORE")}) == ["bird", "spider"]
    assert names(full_text="huge") == ["whale"]
    assert names(full_text="stripes") == ["zebra"]
    zoo2.update("bird", pack(Animal(weight=0.25)), ["weight"])
    assert Animal.FromString(zoo2.get("bird").value).weight == 0.25
    assert Keeper.FromString(Coll(api, a, keepers.name).get("ann").value) == ann
    Coll(api, a, others.name).put(pack(cls["zoo.Other"](note="n")))
    api.coll("zoo.Keeper", ns=a)
    # b kept v1, with field 7; a has v2, without.
    assert api.coll("zoo.Animal", ns=b).search(filters={"all_legs": flt(OP.OP_EXISTS)}).total_count == 0
    expect_error(C.INVALID_ARGUMENT, api.svc.Search,
                 zoo2.req(cs_pb2.SearchRequest, filters={"all_legs": flt(OP.OP_EXISTS)}), mentions=["all_legs"])
    unknown_type(api, b, "zoo.Keeper")
    unknown_type(api, DEFAULT_NS, "zoo.Animal")
