"""The registry's bounds (issue 13: one request must never take the node down): quotas on
what clients may register, UnregisterProto and UnregisterService, and a start-up replay
that skips what is over the quotas or broken instead of failing.

Quotas (README, Registry): per namespace, distinct files (--registry-max-files), versions
per file (--registry-max-versions) and bytes (--registry-max-namespace-bytes); per node,
namespaces (--registry-max-namespaces) and bytes (--registry-max-total-bytes, with the files
unregistered since the start). A version or a service record counts its serialized size
plus 1 KiB. Going over is RESOURCE_EXHAUSTED naming the flag, and changes nothing.
"""

import re
import signal
import sqlite3
import subprocess

import pytest

from collections_util import (
    DEFAULT_NS, Api, C, assert_ok, call, create_collection_req, expect_error, nn, pack, repo_pb2, uniq,
)
from collector import collection_server_pb2, registry_pb2
from registry_util import (
    ANIMAL_FILE, DOUBLE, FEEDER_FILE, INT32, KEEPER_FILE, STRING, Classes, Reg, animal_file, changed,
    compiled_service, expect_raw_error, feeder_file, field, field_of, hdr, keeper_file, message, method,
    msg_of, proto_file, service,
)
from test_reflection import VERSIONS, files_of
from test_registry import REFLECTION_NOT_FOUND, Reflect, service_names, unknown_type

RE = C.RESOURCE_EXHAUSTED
FP = C.FAILED_PRECONDITION
ENTRY = 1024  # what a version or a service record counts beyond its serialized size

DEFAULTS = {
    "registry-max-files": 1000,
    "registry-max-versions": 100,
    "registry-max-namespace-bytes": 16 << 20,
    "registry-max-namespaces": 1000,
    "registry-max-total-bytes": 40 << 20,
}


def small(name, msg, package="q", deps=(), fields=(("a", 1, STRING),)):
    """A file of one message."""
    return proto_file(name, package=package, deps=list(deps),
                      messages=[message(msg, *[field(n, k, t) for n, k, t in fields])])


def plus_field(fd, name, number, type_=INT32):
    return changed(fd, lambda f: f.message_type[0].field.append(field(name, number, type_)))


def unregister_proto_req(ns, name):
    return registry_pb2.UnregisterProtoRequest(namespace=ns, file_name=name)


def unregister_service_req(ns, name):
    return registry_pb2.UnregisterServiceRequest(namespace=ns, service_name=name)


def lookup_absent(reg, ns, name):
    expect_error(C.NOT_FOUND, reg.stub.LookupService,
                 registry_pb2.LookupServiceRequest(namespace=ns, service_name=name))


def listed(reg, ns):
    """The service names of ns ([] when it has none: an empty list, as upstream)."""
    return service_names(reg.stub.ListServices(registry_pb2.ListServicesRequest(namespace=ns), timeout=10).services)


def delete_collections(api, ns):
    for c in api.discover_all(ns):
        call(api.repo.DeleteCollection, repo_pb2.DeleteCollectionRequest(collection=nn(ns, c.name)))


# =======================================================================================
# Quotas


def test_quota_files_per_namespace(servers):
    n = servers.node("--registry-max-files", "2")
    reg, api = Reg(n), Api(n)
    ns = uniq("qf")
    a = small("q/a.proto", "A")
    reg.proto(ns, a)
    reg.proto(ns, small("q/b.proto", "B"))
    expect_error(RE, reg.stub.RegisterProto, reg.proto_req(ns, small("q/c.proto", "C")),
                 mentions=["--registry-max-files", ns])
    unknown_type(api, ns, "q.C")
    # A new version of a file the namespace has is no new file; the same file again neither.
    reg.proto(ns, plus_field(a, "b", 2))
    reg.proto(ns, small("q/b.proto", "B"))
    # Two new files (a file and its import) where one fits: neither goes in.
    ns2 = uniq("qf")
    reg.proto(ns2, small("q/x.proto", "X"))
    expect_error(RE, reg.stub.RegisterProto, reg.proto_req(ns2, keeper_file(), [animal_file()]),
                 mentions=["--registry-max-files"])
    unknown_type(api, ns2, "zoo.Animal")
    # The file of a service counts, and so does the file made for a service no file declares.
    svc_file = proto_file("q/s.proto", package="q", messages=[message("Req", field("a", 1, STRING))],
                          services=[service("S", method("Do", ".q.Req", ".q.Req"))])
    s = reg.service(ns2, svc_file.service[0], svc_file)
    pantry = service("q.Pantry", method("Stock", ".q.X", ".q.Req"))
    expect_error(RE, reg.stub.RegisterService, reg.service_req(ns2, pantry), mentions=["--registry-max-files"])
    lookup_absent(reg, ns2, "q.Pantry")
    other = proto_file("q/t.proto", package="q", messages=[message("T", field("a", 1, STRING))],
                       services=[service("T2", method("Do", ".q.T", ".q.T"))])
    expect_error(RE, reg.stub.RegisterService, reg.service_req(ns2, other.service[0], other),
                 mentions=["--registry-max-files"])
    lookup_absent(reg, ns2, "q.T2")
    unknown_type(api, ns2, "q.T")
    assert listed(reg, ns2) == ["q.S"]
    # At the limit, the same service again changes nothing and is fine.
    assert reg.service(ns2, svc_file.service[0], svc_file).service_id == s.service_id
    # Another namespace has its own count; a removal makes room.
    reg.proto(uniq("qf"), small("q/c.proto", "C"))
    assert reg.unregister_proto(ns, "q/b.proto").versions_removed == 1
    reg.proto(ns, small("q/c.proto", "C"))
    api.coll("q.C", ns=ns)


def test_quota_versions_per_file(servers):
    n = servers.node("--registry-max-versions", "2")
    reg, api = Reg(n), Api(n)
    ns = uniq("qv")
    v1 = small("q/v.proto", "V")
    v2 = plus_field(v1, "b", 2)
    v3 = plus_field(v2, "c", 3)
    reg.proto(ns, v1)
    r2 = reg.proto(ns, v2)
    expect_error(RE, reg.stub.RegisterProto, reg.proto_req(ns, v3), mentions=["--registry-max-versions", "q/v.proto"])
    # v2 is still the registered version: v3's field is unknown.
    assert reg.proto(ns, v2).proto_id == r2.proto_id
    api.coll("q.V", ns=ns, indexed=["b"])
    expect_error(C.INVALID_ARGUMENT, api.repo.CreateCollection, create_collection_req(ns, uniq("t"), "q.V", indexed=["c"]),
                 mentions=["c"])
    # Every version goes with UnregisterProto (once no collection holds q.V); then v3 is
    # a first version.
    expect_error(FP, reg.stub.UnregisterProto, unregister_proto_req(ns, "q/v.proto"), mentions=["q.V"])
    delete_collections(api, ns)
    assert reg.unregister_proto(ns, "q/v.proto").versions_removed == 2
    reg.proto(ns, v3)
    api.coll("q.V", ns=ns, indexed=["c"])


def test_quota_namespace_bytes(servers):
    a, k = animal_file(), keeper_file()
    limit = a.ByteSize() + k.ByteSize() + 2 * ENTRY
    n = servers.node("--registry-max-namespace-bytes", str(limit))
    reg, api = Reg(n), Api(n)
    ns = uniq("qb")
    reg.proto(ns, a)
    reg.proto(ns, k)  # exactly at the limit
    expect_error(RE, reg.stub.RegisterProto, reg.proto_req(ns, small("q/c.proto", "C")),
                 mentions=["--registry-max-namespace-bytes", ns])
    unknown_type(api, ns, "q.C")
    # A service record counts too (this one, declared by no file, would also bring a file).
    pen = service("zoo.Pen", method("In", ".zoo.Animal", ".zoo.Animal"))
    expect_error(RE, reg.stub.RegisterService, reg.service_req(ns, pen), mentions=["--registry-max-namespace-bytes"])
    lookup_absent(reg, ns, "zoo.Pen")
    assert listed(reg, ns) == []
    # Another namespace is not affected; a removal gives the bytes back.
    reg.proto(uniq("qb"), small("q/c.proto", "C"))
    reg.unregister_proto(ns, KEEPER_FILE)
    reg.proto(ns, small("q/c.proto", "C"))
    unknown_type(api, ns, "zoo.Keeper")


def test_quota_service_record_bytes(servers):
    """Re-registering a service declared in a file with a huge method list once grew the
    node without bound; its record counts now."""
    fd = small("q/s.proto", "M")
    fd.service.append(service("S", method("Do", ".q.M", ".q.M")))
    limit = fd.ByteSize() + 2 * ENTRY + 4096
    n = servers.node("--registry-max-namespace-bytes", str(limit))
    reg = Reg(n)
    ns = uniq("qs")
    r = reg.service(ns, fd.service[0], fd)
    big = service("S", *[method(f"Do{i:04d}", ".q.M", ".q.M") for i in range(400)])
    expect_error(RE, reg.stub.RegisterService, reg.service_req(ns, big, fd), mentions=["--registry-max-namespace-bytes"])
    s = reg.lookup(ns, "q.S")
    assert (s.id, list(s.method_names)) == (r.service_id, ["Do"])


def test_quota_namespaces(servers):
    n = servers.node("--registry-max-namespaces", "2")
    reg, api = Reg(n), Api(n)
    a, b, c = uniq("qn"), uniq("qn"), uniq("qn")
    reg.proto(a, small("q/a.proto", "A"))
    # A node service registered in another namespace counts there.
    reg.service(b, compiled_service(collection_server_pb2, "CollectionService"))
    expect_error(RE, reg.stub.RegisterProto, reg.proto_req(c, small("q/a.proto", "A")),
                 mentions=["--registry-max-namespaces"])
    expect_error(RE, reg.stub.RegisterService,
                 reg.service_req(c, compiled_service(collection_server_pb2, "CollectionService")),
                 mentions=["--registry-max-namespaces"])
    assert listed(reg, c) == []
    unknown_type(api, c, "q.A")
    # The namespaces that have registrations still grow; the node's own in the default
    # namespace do not count.
    reg.proto(a, small("q/b.proto", "B"))
    # A namespace emptied no longer counts.
    reg.unregister_service(b, "collector.CollectionService")
    reg.proto(c, small("q/a.proto", "A"))


def test_quota_total_bytes_until_restart(servers):
    t = small("q/t.proto", "T")
    flags = ("--registry-max-total-bytes", str(2 * (t.ByteSize() + ENTRY)))
    n1 = servers.node(*flags)
    reg, api = Reg(n1), Api(n1)
    a, b, c = uniq("qt"), uniq("qt"), uniq("qt")
    reg.proto(a, t)
    reg.proto(b, t)
    expect_error(RE, reg.stub.RegisterProto, reg.proto_req(c, t), mentions=["--registry-max-total-bytes"])
    unknown_type(api, c, "q.T")
    # An unregistered file's memory stays until a restart, and counts until then.
    reg.unregister_proto(a, "q/t.proto")
    expect_error(RE, reg.stub.RegisterProto, reg.proto_req(a, t), mentions=["--registry-max-total-bytes", "unregistered"])
    n1.stop(signal.SIGTERM)
    n2 = servers.node(*flags, data_dir=n1.data_dir)
    reg = Reg(n2)
    reg.proto(c, t)
    expect_error(RE, reg.stub.RegisterProto, reg.proto_req(a, t), mentions=["--registry-max-total-bytes"])


def test_quota_flags_in_help_and_config(servers, collector_bin, tmp_path):
    out = subprocess.run([str(collector_bin), "--help"], capture_output=True, text=True, timeout=10).stdout
    for flag, default in DEFAULTS.items():
        m = re.search(rf"--{flag} N\b(.*?)\(default (\d+)\)", out, re.S)
        assert m and "--" not in m.group(1), f"--help does not print --{flag} with its default:\n{out}"
        assert int(m.group(2)) == default, (flag, m.group(2))
    conf = tmp_path / "node.conf"
    conf.write_text("registry-max-files = 1\n")
    n = servers.node("--config", conf)
    reg = Reg(n)
    ns = uniq("qc")
    reg.proto(ns, small("q/a.proto", "A"))
    expect_error(RE, reg.stub.RegisterProto, reg.proto_req(ns, small("q/b.proto", "B")), mentions=["--registry-max-files"])
    bad = subprocess.run([str(collector_bin), "--registry-max-files", "0"], capture_output=True, text=True, timeout=10)
    assert bad.returncode != 0 and "registry-max-files" in bad.stderr


# =======================================================================================
# UnregisterProto


def _legs_as_string(fd):
    field_of(msg_of(fd, "Animal"), 2).type = STRING


def test_unregister_proto(servers):
    n = servers.node("--no-validation")  # reflection answers in any namespace
    reg, api = Reg(n), Api(n)
    ns = uniq("up")
    reg.proto(ns, animal_file())
    v2 = changed(animal_file(), lambda fd: msg_of(fd, "Animal").field.append(field("weight", 8, DOUBLE)))
    reg.proto(ns, v2)
    reg.proto(ns, keeper_file())
    refl = Reflect(n, VERSIONS[0])
    assert files_of(refl.ask(ns, file_by_filename=ANIMAL_FILE))[0].name == ANIMAL_FILE
    # Field 2 was int32 legs: the history refuses it as a string.
    incompatible = changed(animal_file(), _legs_as_string)
    expect_error(FP, reg.stub.RegisterProto, reg.proto_req(ns, incompatible), mentions=["zoo.Animal"])

    assert reg.unregister_proto(ns, KEEPER_FILE).versions_removed == 1
    assert reg.unregister_proto(ns, ANIMAL_FILE).versions_removed == 2
    for t in ("zoo.Animal", "zoo.Animal.Leg", "zoo.Keeper"):
        unknown_type(api, ns, t)
    for kw in ({"file_by_filename": ANIMAL_FILE}, {"file_containing_symbol": "zoo.Animal"},
               {"file_by_filename": KEEPER_FILE}):
        r = refl.ask(ns, **kw)
        assert r.WhichOneof("message_response") == "error_response", (kw, r)
        assert r.error_response.error_code == REFLECTION_NOT_FOUND
    expect_error(C.NOT_FOUND, reg.stub.UnregisterProto, unregister_proto_req(ns, ANIMAL_FILE), mentions=[ANIMAL_FILE, ns])
    # The history went with the file: the same name may come back with field 2 a string.
    reg.proto(ns, incompatible)
    Animal = Classes(incompatible)["zoo.Animal"]
    coll = api.coll("zoo.Animal", ns=ns, indexed=["legs"])
    coll.put(pack(Animal(name="x", legs="four")), id="x")
    assert Animal.FromString(coll.get("x").value).legs == "four"


def test_unregister_proto_refusals(servers):
    n = servers.node()
    reg, api = Reg(n), Api(n)
    ns = uniq("upr")
    ids = {ANIMAL_FILE: reg.proto(ns, animal_file()).proto_id}
    reg.proto(ns, keeper_file())
    fd = feeder_file()
    reg.service(ns, fd.service[0], fd)
    ids[FEEDER_FILE] = reg.proto(ns, fd).proto_id  # unchanged: the id it has
    reg.service(ns, service("zoo.Pantry", method("Count", ".zoo.Other", ".google.protobuf.Empty")))

    def refused(file_name, *mentions):
        before = listed(reg, ns)
        expect_error(FP, reg.stub.UnregisterProto, unregister_proto_req(ns, file_name), mentions=[file_name, *mentions])
        assert listed(reg, ns) == before
        for name, id_ in ids.items():
            assert reg.proto(ns, animal_file() if name == ANIMAL_FILE else fd).proto_id == id_, name

    # A service uses one of its messages (Herd takes a zoo.Animal); a service is declared
    # in it.
    refused(ANIMAL_FILE, "zoo.Feeder", "zoo.Animal")
    refused(FEEDER_FILE, "zoo.Feeder")
    reg.unregister_service(ns, "zoo.Feeder")
    refused(ANIMAL_FILE, "zoo.Pantry", "zoo.Other")
    reg.unregister_service(ns, "zoo.Pantry")
    # Another file imports it.
    assert reg.unregister_proto(ns, FEEDER_FILE).versions_removed == 1
    del ids[FEEDER_FILE]
    refused(ANIMAL_FILE, KEEPER_FILE)
    # Only an earlier version of keeper.proto imports it: that version is kept for the
    # history of its field numbers, so it still counts.
    reg.proto(ns, proto_file(KEEPER_FILE, messages=[message("Keeper", field("name", 1, STRING))]))
    refused(ANIMAL_FILE, KEEPER_FILE, "earlier version")
    assert reg.unregister_proto(ns, KEEPER_FILE).versions_removed == 2
    # A collection holds one of its messages.
    coll = api.coll("zoo.Other", ns=ns)
    refused(ANIMAL_FILE, "zoo.Other", coll.name)
    delete_collections(api, ns)
    assert reg.unregister_proto(ns, ANIMAL_FILE).versions_removed == 1


def test_unregister_not_found_and_invalid(servers):
    n = servers.node()
    reg = Reg(n)
    ns = uniq("unf")
    reg.proto(ns, animal_file())
    for req, mentions in ((unregister_proto_req(ns, "zoo/none.proto"), ["zoo/none.proto", ns]),
                          (unregister_proto_req(uniq("nothing"), ANIMAL_FILE), [ANIMAL_FILE]),
                          (unregister_proto_req(ns, "collector/common.proto"), ["collector/common.proto"]),
                          (unregister_proto_req(DEFAULT_NS, ANIMAL_FILE), [ANIMAL_FILE])):
        expect_error(C.NOT_FOUND, reg.stub.UnregisterProto, req, mentions=mentions)
    for req, mentions in ((unregister_service_req(ns, "zoo.Feeder"), ["zoo.Feeder"]),
                          (unregister_service_req(uniq("nothing"), "zoo.Feeder"), []),
                          (unregister_service_req(DEFAULT_NS, "zoo.Feeder"), ["zoo.Feeder"])):
        expect_error(C.NOT_FOUND, reg.stub.UnregisterService, req, mentions=mentions)
    for fn, req in ((reg.stub.UnregisterProto, unregister_proto_req(ns, "")),
                    (reg.stub.UnregisterProto, unregister_proto_req("system", ANIMAL_FILE)),
                    (reg.stub.UnregisterProto, unregister_proto_req("../x", ANIMAL_FILE)),
                    (reg.stub.UnregisterService, unregister_service_req(ns, "")),
                    (reg.stub.UnregisterService, unregister_service_req("system", "zoo.Feeder"))):
        expect_error(C.INVALID_ARGUMENT, fn, req)
    # Through the header namespace too, once the registry is served there.
    reg.service(ns, compiled_service(registry_pb2, "CollectorRegistry"))
    expect_error(C.NOT_FOUND, reg.stub.UnregisterProto, unregister_proto_req("", "zoo/none.proto"), hdr(ns),
                 mentions=[ns])
    assert reg.unregister_proto("", ANIMAL_FILE, metadata=hdr(ns)).versions_removed == 1


# =======================================================================================
# UnregisterService


def test_unregister_service(servers):
    n = servers.node("--no-validation")
    reg = Reg(n)
    ns = uniq("us")
    reg.zoo(ns)
    pantry = service("zoo.Pantry", method("Stock", ".zoo.FeedRequest", ".zoo.FeedReply"))
    p1 = reg.service(ns, pantry)
    refl = Reflect(n, VERSIONS[0])
    assert files_of(refl.ask(ns, file_containing_symbol="zoo.Pantry"))[0].name == "registry/zoo.Pantry.proto"

    reg.unregister_service(ns, "zoo.Pantry")
    lookup_absent(reg, ns, "zoo.Pantry")
    assert listed(reg, ns) == ["zoo.Feeder"]
    assert not reg.validate(ns, "zoo.Pantry", "Stock").is_valid
    # Reflection: neither listed nor its file (made for it) served.
    names = {s.name for s in refl.ask(ns, list_services="").list_services_response.service}
    assert names == {"zoo.Feeder"}
    for kw in ({"file_containing_symbol": "zoo.Pantry"}, {"file_by_filename": "registry/zoo.Pantry.proto"}):
        r = refl.ask(ns, **kw)
        assert r.error_response.error_code == REFLECTION_NOT_FOUND, (kw, r)
    expect_error(C.NOT_FOUND, reg.stub.UnregisterService, unregister_service_req(ns, "zoo.Pantry"), mentions=["zoo.Pantry"])
    # It may come back, as a new registration with upstream's id (the same as before).
    p2 = reg.service(ns, pantry)
    assert p2.service_id == p1.service_id == f"{ns}/zoo.Pantry"

    # A service declared in a file: the file stays, its types with it.
    reg.unregister_service(ns, "zoo.Feeder")
    assert listed(reg, ns) == ["zoo.Pantry"]
    assert files_of(refl.ask(ns, file_by_filename=FEEDER_FILE))[0].name == FEEDER_FILE
    # The namespace's last service gone, the namespace has none.
    reg.unregister_service(ns, "zoo.Pantry")
    assert listed(reg, ns) == []
    # Nothing uses feeder.proto any more.
    reg.unregister_proto(ns, FEEDER_FILE)


def test_unregister_service_gate(servers):
    """With validation on, a removed method is refused before its handler runs."""
    n = servers.node()
    reg, api = Reg(n), Api(n)
    ns = uniq("usg")
    reg.service(ns, compiled_service(collection_server_pb2, "CollectionService"))
    assert_ok(call(api.svc.Meta, collection_server_pb2.MetaRequest(), hdr(ns)))
    reg.unregister_service(ns, "collector.CollectionService")
    expect_raw_error(C.UNIMPLEMENTED, reg.ch, "/collector.CollectionService/Meta", ns=ns,
                     mentions=["/collector.CollectionService/Meta", ns])


def test_unregister_service_refusals(servers):
    n = servers.node()
    reg, api = Reg(n), Api(n)
    # The node's own services in its default namespace stay.
    for name in ("collector.CollectionService", "collector.CollectorRegistry", "grpc.health.v1.Health"):
        expect_error(FP, reg.stub.UnregisterService, unregister_service_req(DEFAULT_NS, name), mentions=[name])
        assert reg.lookup(DEFAULT_NS, name).service_name == name
    assert_ok(call(api.svc.Meta, collection_server_pb2.MetaRequest()))
    assert reg.validate(DEFAULT_NS, "collector.CollectorRegistry", "UnregisterProto").is_valid
    # The file made for a service stays while another file imports it, and so does the service.
    ns = uniq("usr")
    reg.proto(ns, animal_file())
    reg.service(ns, service("zoo.Pen", method("In", ".zoo.Animal", ".zoo.Animal")))
    reg.proto(ns, proto_file("zoo/uses.proto", deps=["registry/zoo.Pen.proto"],
                             messages=[message("U", field("a", 1, STRING))]))
    expect_error(FP, reg.stub.UnregisterService, unregister_service_req(ns, "zoo.Pen"),
                 mentions=["registry/zoo.Pen.proto", "zoo/uses.proto"])
    assert reg.lookup(ns, "zoo.Pen").service_name == "zoo.Pen"
    # ...and that file cannot go alone while the service is declared in it.
    reg.unregister_proto(ns, "zoo/uses.proto")
    expect_error(FP, reg.stub.UnregisterProto, unregister_proto_req(ns, "registry/zoo.Pen.proto"), mentions=["zoo.Pen"])
    reg.unregister_service(ns, "zoo.Pen")
    reg.unregister_proto(ns, ANIMAL_FILE)


def test_service_registered_again_remakes_its_file(servers):
    """The file made for a service follows its method set (it kept the first one, so
    reflection served methods the registration no longer had)."""
    n = servers.node("--no-validation")
    reg = Reg(n)
    ns = uniq("remake")
    reg.zoo(ns)
    refl = Reflect(n, VERSIONS[0])

    def methods():
        fds = files_of(refl.ask(ns, file_containing_symbol="zoo.Pantry"))
        assert fds[0].name == "registry/zoo.Pantry.proto"
        return [m.name for m in fds[0].service[0].method]

    reg.service(ns, service("zoo.Pantry", method("Stock", ".zoo.FeedRequest", ".zoo.FeedReply")))
    assert methods() == ["Stock"]
    reg.service(ns, service("zoo.Pantry", method("Stock", ".zoo.FeedRequest", ".zoo.FeedReply"),
                            method("Count", ".zoo.Animal", ".google.protobuf.Empty")))
    assert methods() == ["Stock", "Count"]
    reg.unregister_service(ns, "zoo.Pantry")
    expect_error(C.NOT_FOUND, reg.stub.UnregisterProto, unregister_proto_req(ns, "registry/zoo.Pantry.proto"))


@pytest.mark.parametrize("name", ["Do/It", "1st", "do.it", "a b"])
def test_method_name_must_be_an_identifier(servers, name):
    n = servers.node()
    reg = Reg(n)
    ns = uniq("mname")
    reg.proto(ns, animal_file())
    fd = small("q/s.proto", "M")
    fd.service.append(service("S", method("Do", ".q.M", ".q.M")))
    reg.service(ns, fd.service[0], fd)
    for sd, f in ((service("S", method(name, ".q.M", ".q.M")), fd),
                  (service("q.T", method(name, ".zoo.Animal", ".zoo.Animal")), None)):
        expect_error(C.INVALID_ARGUMENT, reg.stub.RegisterService, reg.service_req(ns, sd, f), mentions=[name])
    assert list(reg.lookup(ns, "q.S").method_names) == ["Do"]
    lookup_absent(reg, ns, "q.T")


# =======================================================================================
# Durability and the start-up replay


def test_removals_survive_kill(servers):
    n1 = servers.node()
    reg = Reg(n1)
    ns = uniq("dur")
    reg.zoo(ns)
    reg.service(ns, service("zoo.Pantry", method("Stock", ".zoo.FeedRequest", ".zoo.FeedReply")))
    reg.unregister_service(ns, "zoo.Pantry")
    reg.unregister_proto(ns, KEEPER_FILE)
    n1.stop(signal.SIGKILL)  # answered means durable: no clean shutdown needed
    n2 = servers.node(data_dir=n1.data_dir)
    reg, api = Reg(n2), Api(n2)
    lookup_absent(reg, ns, "zoo.Pantry")
    assert listed(reg, ns) == ["zoo.Feeder"]
    unknown_type(api, ns, "zoo.Keeper")
    expect_error(C.NOT_FOUND, reg.stub.UnregisterProto, unregister_proto_req(ns, KEEPER_FILE))
    expect_error(C.NOT_FOUND, reg.stub.UnregisterProto, unregister_proto_req(ns, "registry/zoo.Pantry.proto"))
    # Registered again after the restart, with another field 1: no history of the old one.
    reg.proto(ns, proto_file(KEEPER_FILE, messages=[message("Keeper", field("id", 1, INT32))]))
    api.coll("zoo.Keeper", ns=ns, indexed=["id"])
    assert reg.lookup(ns, "zoo.Feeder").service_name == "zoo.Feeder"


def test_replay_over_lowered_quotas(servers):
    n1 = servers.node()
    reg = Reg(n1)
    ns, other = uniq("rq"), uniq("rq")
    a = small("q/a.proto", "A")
    reg.proto(ns, a)
    reg.proto(ns, plus_field(a, "b", 2))  # a second version of q/a.proto
    reg.proto(ns, small("q/b.proto", "B"))
    reg.proto(ns, small("q/c.proto", "C"))
    reg.proto(other, small("q/a.proto", "A"))
    n1.stop(signal.SIGTERM)

    n2 = servers.node("--registry-max-files", "2", "--registry-max-versions", "1", "--registry-max-namespaces", "1",
                      data_dir=n1.data_dir)
    reg, api = Reg(n2), Api(n2)
    err = n2.stderr()
    assert re.search(rf"q/a\.proto in namespace {ns} is skipped.*--registry-max-versions", err), err
    assert re.search(rf"q/c\.proto in namespace {ns} is skipped.*--registry-max-files", err), err
    assert re.search(rf"q/a\.proto in namespace {other} is skipped.*--registry-max-namespaces", err), err
    # What fits is there (the first version of q/a.proto), the rest is not.
    api.coll("q.A", ns=ns)
    api.coll("q.B", ns=ns)
    expect_error(C.INVALID_ARGUMENT, api.repo.CreateCollection, create_collection_req(ns, uniq("t"), "q.A", indexed=["b"]),
                 mentions=["b"])
    unknown_type(api, ns, "q.C")
    unknown_type(api, other, "q.A")
    # The skipped records are kept (a restart with the old limits brings them back) and
    # UnregisterProto takes them with the others.
    delete_collections(api, ns)
    assert reg.unregister_proto(ns, "q/a.proto").versions_removed == 2
    assert reg.unregister_proto(ns, "q/c.proto").versions_removed == 1


def _records_db(node):
    return node.data_dir / "system" / "RegisteredProtos" / "records.db"


def test_replay_skips_broken_records(servers):
    n1 = servers.node()
    reg = Reg(n1)
    ns = uniq("rb")
    reg.proto(ns, animal_file())
    reg.proto(ns, small("q/ok.proto", "Ok"))
    n1.stop(signal.SIGTERM)
    # Records an older build (or a bad disk) could leave: bytes that do not decode (a file,
    # a service), a file whose import is not there, a file that imports itself.
    missing = registry_pb2.RegisteredProto(id="r-missing", namespace=ns)
    missing.file_descriptor.CopyFrom(small("q/m.proto", "M", deps=["q/nowhere.proto"]))
    itself = registry_pb2.RegisteredProto(id="r-self", namespace=ns)
    itself.file_descriptor.CopyFrom(small("q/me.proto", "Me", deps=["q/me.proto"]))
    db = sqlite3.connect(_records_db(n1))
    for rid, data in (("r-garbage", b"\xff\xff\xff\xff"), ("r-missing", missing.SerializeToString()),
                      ("r-self", itself.SerializeToString())):
        db.execute("INSERT INTO records (id, data, json, created_at, updated_at) VALUES (?, ?, '{}', 0, 0)", (rid, data))
    db.commit()
    db.close()
    db = sqlite3.connect(n1.data_dir / "system" / "RegisteredServices" / "records.db")
    db.execute("INSERT INTO records (id, data, json, created_at, updated_at) VALUES ('s-garbage', ?, '{}', 0, 0)",
               (b"\x0a\xff\xff",))
    db.commit()
    db.close()

    n2 = servers.node(data_dir=n1.data_dir)
    reg, api = Reg(n2), Api(n2)
    err = n2.stderr()
    assert "unreadable record in system/RegisteredProtos" in err, err
    assert "unreadable record in system/RegisteredServices" in err, err
    assert re.search(r"q/m\.proto in namespace .* no longer loads.*q/nowhere\.proto", err), err
    assert re.search(r"q/me\.proto in namespace .* no longer loads.*imports itself", err), err
    api.coll("zoo.Animal", ns=ns)
    api.coll("q.Ok", ns=ns)
    unknown_type(api, ns, "q.M")


def test_replay_skips_service_whose_types_are_gone(servers):
    n1 = servers.node()
    reg = Reg(n1)
    ns = uniq("rs")
    reg.zoo(ns)
    n1.stop(signal.SIGTERM)
    # feeder.proto's records removed behind the node's back: zoo.Feeder no longer resolves.
    db = sqlite3.connect(_records_db(n1))
    db.execute("DELETE FROM records WHERE json_extract(json, '$.file_descriptor.name') = ?", (FEEDER_FILE,))
    db.commit()
    db.close()
    n2 = servers.node(data_dir=n1.data_dir)
    reg = Reg(n2)
    assert re.search(rf"service zoo.Feeder in namespace {ns} is skipped", n2.stderr()), n2.stderr()
    lookup_absent(reg, ns, "zoo.Feeder")


# =======================================================================================
# A file that imports itself


def test_self_import_refused(servers):
    n = servers.node()
    reg, api = Reg(n), Api(n)
    ns = uniq("self")
    me = small("q/me.proto", "Me", deps=["q/me.proto"])
    expect_error(C.INVALID_ARGUMENT, reg.stub.RegisterProto, reg.proto_req(ns, me), mentions=["q/me.proto", "itself"])
    unknown_type(api, ns, "q.Me")
    # Among dependencies, and as a service's file: the same.
    expect_error(C.INVALID_ARGUMENT, reg.stub.RegisterProto,
                 reg.proto_req(ns, small("q/top.proto", "Top", deps=["q/me.proto"]), [me]), mentions=["q/me.proto"])
    unknown_type(api, ns, "q.Top")
    svc = changed(me, lambda fd: fd.service.append(service("S", method("Do", ".q.Me", ".q.Me"))))
    expect_error(C.INVALID_ARGUMENT, reg.stub.RegisterService, reg.service_req(ns, svc.service[0], svc),
                 mentions=["q/me.proto"])
    lookup_absent(reg, ns, "q.S")
    # Without the import, the file is fine.
    reg.proto(ns, small("q/me.proto", "Me"))
