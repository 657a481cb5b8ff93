"""gRPC server reflection (v1 and v1alpha) on a real node, through grpcio: the service
list, files by name and by symbol with their transitive imports (loaded into a real
DescriptorPool), errors in-band, and many questions on one stream answered in order."""

import queue

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool

from stdgrpc.reflection.v1 import reflection_pb2 as v1_pb2
from stdgrpc.reflection.v1 import reflection_pb2_grpc as v1_grpc
from stdgrpc.reflection.v1alpha import reflection_pb2 as v1alpha_pb2
from stdgrpc.reflection.v1alpha import reflection_pb2_grpc as v1alpha_grpc

NOT_FOUND = 5

EXPECTED_SERVICES = {
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "collector.CollectionService",
    "collector.CollectionRepo",
    "collector.CollectorRegistry",
    "collector.CollectiveDispatcher",
    "collector.CollectiveWorker",
    "collector.CollectorConsole",
}


class Version:
    def __init__(self, name, pb2, grpc_mod):
        self.name = name
        self.pb2 = pb2
        self.grpc = grpc_mod

    def __repr__(self):
        return self.name


VERSIONS = [Version("v1", v1_pb2, v1_grpc), Version("v1alpha", v1alpha_pb2, v1alpha_grpc)]


@pytest.fixture(params=VERSIONS, ids=repr)
def ver(request):
    return request.param


@pytest.fixture
def stub(shared_node, ver):
    return ver.grpc.ServerReflectionStub(shared_node.channel())


class Stream:
    """One ServerReflectionInfo call driven a request at a time: ask() sends one request
    and waits for its answer, so later requests are only sent after earlier answers."""

    _END = object()

    def __init__(self, stub):
        self._q = queue.Queue()
        self.call = stub.ServerReflectionInfo(iter(self._q.get, self._END), timeout=30)

    def ask(self, req):
        self._q.put(req)
        return next(self.call)

    def close(self):
        self._q.put(self._END)
        rest = list(self.call)
        assert rest == []
        assert self.call.code() == grpc.StatusCode.OK, (self.call.code(), self.call.details())


def ask_once(stub, req):
    resps = list(stub.ServerReflectionInfo(iter([req]), timeout=30))
    assert len(resps) == 1
    return resps[0]


def files_of(resp):
    assert resp.WhichOneof("message_response") == "file_descriptor_response", resp
    return [
        descriptor_pb2.FileDescriptorProto.FromString(b)
        for b in resp.file_descriptor_response.file_descriptor_proto
    ]


def check_closure(fds):
    """Each file once, and every import of every file among them."""
    names = [fd.name for fd in fds]
    assert len(names) == len(set(names)), names
    for fd in fds:
        for dep in fd.dependency:
            assert dep in names, f"{fd.name} imports {dep}, which is not in {names}"


def load_pool(fds):
    """Adds the files to a fresh pool, imports first (the order sent is not required to be
    an import order)."""
    pool = descriptor_pool.DescriptorPool()
    pending = {fd.name: fd for fd in fds}
    added = set()
    while pending:
        ready = [n for n, fd in pending.items() if all(d in added for d in fd.dependency)]
        assert ready, f"import cycle or missing file among {sorted(pending)}"
        for n in sorted(ready):
            pool.Add(pending.pop(n))
            added.add(n)
    return pool


def test_list_services(stub, ver):
    req = ver.pb2.ServerReflectionRequest(host="localhost", list_services="*")
    resp = ask_once(stub, req)
    assert resp.WhichOneof("message_response") == "list_services_response", resp
    names = [s.name for s in resp.list_services_response.service]
    assert len(names) == len(set(names)), names
    assert EXPECTED_SERVICES <= set(names), EXPECTED_SERVICES - set(names)
    assert resp.valid_host == "localhost"
    assert resp.original_request == req


def test_file_containing_service_loads_into_pool(stub, ver):
    req = ver.pb2.ServerReflectionRequest(file_containing_symbol="collector.CollectionService")
    resp = ask_once(stub, req)
    assert resp.original_request == req
    fds = files_of(resp)
    assert fds[0].name == "collector/collection_server.proto"
    assert "CollectionService" in [s.name for s in fds[0].service]
    check_closure(fds)
    pool = load_pool(fds)
    svc = pool.FindServiceByName("collector.CollectionService")
    get = svc.FindMethodByName("Get")
    assert get.input_type.full_name == "collector.GetRequest"
    assert get.output_type.full_name == "collector.GetResponse"
    assert get.input_type.fields, "GetRequest came without fields"


@pytest.mark.parametrize(
    "symbol,file",
    [
        ("collector.CollectionService.Get", "collector/collection_server.proto"),
        ("collector.GetRequest", "collector/collection_server.proto"),
        ("collector.Status.Code", "collector/common.proto"),
        ("collector.SearchCollectionsResponse.CollectionResult", "collector/collection_repo.proto"),
        ("collector.CollectorRegistry", "collector/registry.proto"),
        ("grpc.health.v1.Health", "grpc/health/v1/health.proto"),
        ("grpc.reflection.v1alpha.ServerReflection", "grpc/reflection/v1alpha/reflection.proto"),
        ("google.protobuf.FileDescriptorProto", "google/protobuf/descriptor.proto"),
    ],
)
def test_file_containing_symbol(stub, ver, symbol, file):
    fds = files_of(ask_once(stub, ver.pb2.ServerReflectionRequest(file_containing_symbol=symbol)))
    assert fds[0].name == file
    check_closure(fds)
    load_pool(fds)


def test_registry_file_brings_descriptor_proto(stub, ver):
    fds = files_of(ask_once(stub, ver.pb2.ServerReflectionRequest(file_containing_symbol="collector.CollectorRegistry")))
    names = [fd.name for fd in fds]
    assert "google/protobuf/descriptor.proto" in names and "collector/common.proto" in names
    pool = load_pool(fds)
    assert pool.FindServiceByName("collector.CollectorRegistry").methods


def test_file_by_filename(stub, ver):
    req = ver.pb2.ServerReflectionRequest(file_by_filename="collector/common.proto")
    resp = ask_once(stub, req)
    assert resp.original_request == req
    fds = files_of(resp)
    assert fds[0].name == "collector/common.proto"
    assert fds[0].package == "collector"
    assert "Status" in [m.name for m in fds[0].message_type]
    check_closure(fds)
    assert {fd.name for fd in fds} == {"collector/common.proto", *fds[0].dependency}
    pool = load_pool(fds)
    assert pool.FindMessageTypeByName("collector.Status").enum_types_by_name["Code"]


@pytest.mark.parametrize(
    "field,value",
    [
        ("file_containing_symbol", "no.such.Symbol"),
        ("file_by_filename", "no/such/file.proto"),
        ("all_extension_numbers_of_type", "no.such.Message"),
    ],
)
def test_unknown_names_not_found(stub, ver, field, value):
    req = ver.pb2.ServerReflectionRequest(**{field: value})
    resp = ask_once(stub, req)
    assert resp.WhichOneof("message_response") == "error_response", resp
    assert resp.error_response.error_code == NOT_FOUND
    assert value in resp.error_response.error_message
    assert resp.original_request == req


def test_unknown_extension_not_found(stub, ver):
    req = ver.pb2.ServerReflectionRequest(
        file_containing_extension=ver.pb2.ExtensionRequest(
            containing_type="google.protobuf.FileOptions", extension_number=54321
        )
    )
    resp = ask_once(stub, req)
    assert resp.WhichOneof("message_response") == "error_response", resp
    assert resp.error_response.error_code == NOT_FOUND


def test_extension_numbers_of_known_type(stub, ver):
    resp = ask_once(
        stub, ver.pb2.ServerReflectionRequest(all_extension_numbers_of_type="google.protobuf.FileOptions")
    )
    assert resp.WhichOneof("message_response") == "all_extension_numbers_response", resp
    assert resp.all_extension_numbers_response.base_type_name == "google.protobuf.FileOptions"
    # No compiled-in file extends FileOptions.
    assert list(resp.all_extension_numbers_response.extension_number) == []


def test_error_then_stream_goes_on(stub, ver):
    s = Stream(stub)
    err = s.ask(ver.pb2.ServerReflectionRequest(file_containing_symbol="collector.NoSuchThing"))
    assert err.WhichOneof("message_response") == "error_response"
    assert err.error_response.error_code == NOT_FOUND
    ok = s.ask(ver.pb2.ServerReflectionRequest(file_containing_symbol="collector.CollectionService"))
    assert files_of(ok)[0].name == "collector/collection_server.proto"
    again = s.ask(ver.pb2.ServerReflectionRequest(file_by_filename="no/such.proto"))
    assert again.error_response.error_code == NOT_FOUND
    listed = s.ask(ver.pb2.ServerReflectionRequest(list_services=""))
    assert EXPECTED_SERVICES <= {x.name for x in listed.list_services_response.service}
    s.close()


def test_many_requests_answered_in_order(stub, ver):
    pb = ver.pb2
    reqs = []
    for i in range(10):
        reqs += [
            pb.ServerReflectionRequest(host=f"h{i}", list_services=""),
            pb.ServerReflectionRequest(host=f"h{i}", file_containing_symbol="collector.CollectionService"),
            pb.ServerReflectionRequest(host=f"h{i}", file_containing_symbol=f"no.such.Symbol{i}"),
            pb.ServerReflectionRequest(host=f"h{i}", file_by_filename="google/protobuf/descriptor.proto"),
        ]
    # All requests go out without waiting for answers.
    resps = list(stub.ServerReflectionInfo(iter(reqs), timeout=60))
    assert len(resps) == len(reqs)
    kinds = ["list_services_response", "file_descriptor_response", "error_response", "file_descriptor_response"]
    for i, (req, resp) in enumerate(zip(reqs, resps)):
        assert resp.original_request == req, i
        assert resp.valid_host == req.host
        assert resp.WhichOneof("message_response") == kinds[i % 4], (i, resp)
    assert files_of(resps[3])[0].name == "google/protobuf/descriptor.proto"


def test_v1_and_v1alpha_agree(shared_node):
    ch = shared_node.channel()
    a = v1_grpc.ServerReflectionStub(ch)
    b = v1alpha_grpc.ServerReflectionStub(ch)
    sym = "collector.CollectiveWorker"
    ra = ask_once(a, v1_pb2.ServerReflectionRequest(file_containing_symbol=sym))
    rb = ask_once(b, v1alpha_pb2.ServerReflectionRequest(file_containing_symbol=sym))
    assert list(ra.file_descriptor_response.file_descriptor_proto) == list(
        rb.file_descriptor_response.file_descriptor_proto
    )
    la = ask_once(a, v1_pb2.ServerReflectionRequest(list_services=""))
    lb = ask_once(b, v1alpha_pb2.ServerReflectionRequest(list_services=""))
    assert [s.name for s in la.list_services_response.service] == [
        s.name for s in lb.list_services_response.service
    ]


def test_empty_stream_ends_ok(stub):
    call = stub.ServerReflectionInfo(iter([]), timeout=30)
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK
