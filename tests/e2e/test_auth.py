"""Who may do what (README, Security): bearer tokens with scopes per namespace, checked once
on the call path before any work; CollectorAuth (CreateToken, RevokeToken, ListTokens,
ListAudit); the first admin token; the audit log; auth over TLS; the mesh credential.

The matrix calls every method of every collector.* service (read from the generated
descriptors, so that a method added later is in it) with no token, a token of another
namespace, a read-only token and an admin token, and checks the code of each and that the
refused calls changed nothing."""

import os
import stat
import time

import grpc
import pytest
from google.protobuf import any_pb2

from collector import (
    auth_pb2, auth_pb2_grpc, collection_pb2, collection_repo_pb2, collection_repo_pb2_grpc,
    collection_server_pb2, collection_server_pb2_grpc, common_pb2, console_pb2, dispatcher_pb2,
    dispatcher_pb2_grpc, registry_pb2, registry_pb2_grpc, worker_pb2,
)
from stdgrpc.health.v1 import health_pb2, health_pb2_grpc

T = 10
NS = "a"
OTHER = "b"
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTH = grpc.StatusCode.UNAUTHENTICATED
FILES = [auth_pb2, collection_repo_pb2, collection_server_pb2, console_pb2, dispatcher_pb2,
         registry_pb2, worker_pb2]
CLIENT_STREAMING = {"PutFile", "PushCollection"}
SERVER_STREAMING = {"GetFile", "PullCollection"}
# Methods a token with "read" on NS may call (besides those any token may: Meta).
READS = {
    "CollectionService": {"Get", "List", "Search", "Describe", "GetFile", "ListFiles", "Meta"},
    "CollectionRepo": {"Discover", "Route", "SearchCollections", "PullCollection"},
    "CollectorRegistry": {"LookupService", "ValidateMethod", "ListServices"},
    "CollectiveWorker": {"GetWorkflowStatus", "GetWorkflowHistory", "ListWorkflows", "ListWorkflowDefinitions"},
    "CollectorConsole": {"Display"},
}


def md(token):
    return [("authorization", f"Bearer {token}")] if token else []


def admin_token(node):
    path = node.data_dir / "system" / "admin-token"
    return path.read_text().strip()


def auth_stub(node):
    return auth_pb2_grpc.CollectorAuthStub(node.channel())


def new_token(node, admin, name, grants):
    r = auth_stub(node).CreateToken(
        auth_pb2.CreateTokenRequest(name=name, grants=[auth_pb2.AuthGrant(namespace=ns, scopes=s)
                                                       for ns, s in grants]),
        metadata=md(admin), timeout=T)
    return r.token, r.info.id


def auth_node(servers, *extra):
    return servers.node("--auth", "on", *extra)


# ---- the matrix ----

def methods():
    for f in FILES:
        for sd in f.DESCRIPTOR.services_by_name.values():
            for m in sd.methods:
                yield sd, m


def message_class(desc):
    for f in FILES + [collection_pb2, common_pb2]:
        for name, cls in vars(f).items():
            if getattr(cls, "DESCRIPTOR", None) is desc:
                return cls
    from google.protobuf import message_factory
    return message_factory.MessageFactory().GetPrototype(desc)


def fill(msg, depth=0):
    """Names NS wherever the request can name a namespace (its own fields and those of the
    messages it holds, oneofs included), and a name where one goes."""
    for f in msg.DESCRIPTOR.fields:
        if f.label == f.LABEL_REPEATED:
            continue
        if f.type == f.TYPE_STRING and f.name in ("namespace", "dest_namespace"):
            setattr(msg, f.name, NS)
        elif f.type == f.TYPE_STRING and f.name in ("name", "collection_name", "dest_name"):
            setattr(msg, f.name, "x")
        elif f.type == f.TYPE_MESSAGE and depth < 1 and f.message_type.full_name.startswith("collector."):
            fill(getattr(msg, f.name), depth + 1)
    return msg


def request_of(sd, m):
    req = fill(message_class(m.input_type)())
    if sd.name == "CollectorConsole" and m.name == "Stop":
        req.target = console_pb2.StopRequest.DISPATCHER  # answered UNIMPLEMENTED: the node stays
    if sd.name == "CollectorConsole" and m.name == "Reset":
        req.confirm = False
    return req


def invoke(node, sd, m, token):
    ch = node.channel()
    path = f"/{sd.full_name}/{m.name}"
    req = request_of(sd, m)
    ser = lambda x: x.SerializeToString()  # noqa: E731
    de = lambda b: b  # noqa: E731
    meta = md(token) + [("x-collector-namespace", NS)]
    try:
        if m.name in CLIENT_STREAMING:
            ch.stream_unary(path, ser, de)(iter([req]), metadata=meta, timeout=T)
        elif m.name in SERVER_STREAMING:
            list(ch.unary_stream(path, ser, de)(req, metadata=meta, timeout=T))
        else:
            ch.unary_unary(path, ser, de)(req, metadata=meta, timeout=T)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def snapshot(node, admin):
    """What a refused call could have changed: collections, services, tokens, the node."""
    meta = md(admin)
    repo = collection_repo_pb2_grpc.CollectionRepoStub(node.channel())
    reg = registry_pb2_grpc.CollectorRegistryStub(node.channel())
    cs = collection_server_pb2_grpc.CollectionServiceStub(node.channel())
    colls = repo.Discover(collection_repo_pb2.DiscoverRequest(), metadata=meta, timeout=T)
    names = sorted((c.namespace, c.name) for c in colls.collections)
    recs = cs.List(collection_server_pb2.ListRequest(namespace=NS, collection_name="x"),
                   metadata=meta, timeout=T)
    svcs = reg.ListServices(registry_pb2.ListServicesRequest(), metadata=meta, timeout=T)
    toks = auth_stub(node).ListTokens(auth_pb2.ListTokensRequest(), metadata=meta, timeout=T)
    return (names, sorted(i.value for i in recs.items), sorted(s.service_name for s in svcs.services),
            sorted(t.id for t in toks.tokens))


def test_every_method_with_every_kind_of_caller(servers):
    node = auth_node(servers)
    admin = admin_token(node)
    # A collection with a record in NS, so that refused writes have something to change.
    repo = collection_repo_pb2_grpc.CollectionRepoStub(node.channel())
    repo.CreateCollection(collection_repo_pb2.CreateCollectionRequest(collection=collection_pb2.Collection(
        namespace=NS, name="x", message_type=common_pb2.MessageTypeRef(message_name="google.protobuf.Struct"))),
        metadata=md(admin), timeout=T)
    cs = collection_server_pb2_grpc.CollectionServiceStub(node.channel())
    item = any_pb2.Any(type_url="type.googleapis.com/google.protobuf.Struct", value=b"")
    cs.Create(collection_server_pb2.CreateRequest(namespace=NS, collection_name="x", id="r1", item=item),
              metadata=md(admin), timeout=T)
    other, _ = new_token(node, admin, "other", [(OTHER, ["read", "write", "register", "admin"])])
    reader, _ = new_token(node, admin, "reader", [(NS, ["read"])])
    before = snapshot(node, admin)
    seen = 0
    for sd, m in methods():
        what = f"{sd.name}/{m.name}"
        assert invoke(node, sd, m, None) == UNAUTH, what
        assert invoke(node, sd, m, "col_0000000000000000_" + "0" * 64) == UNAUTH, what
        code = invoke(node, sd, m, other)
        assert (code == DENIED) == (m.name != "Meta"), (what, code)
        code = invoke(node, sd, m, reader)
        allowed = m.name in READS.get(sd.name, ())
        assert (code not in (DENIED, UNAUTH)) == allowed, (what, code)
        seen += 1
    assert seen >= 55
    assert snapshot(node, admin) == before
    # The admin is refused nothing (what the handlers answer to these requests is theirs).
    for sd, m in methods():
        code = invoke(node, sd, m, admin)
        assert code not in (DENIED, UNAUTH), (f"{sd.name}/{m.name}", code)
    health = health_pb2_grpc.HealthStub(node.channel())
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=T).status == health_pb2.HealthCheckResponse.SERVING


def test_messages_leak_nothing(servers):
    """A refusal reads the same whether the collection exists or not."""
    node = auth_node(servers)
    admin = admin_token(node)
    repo = collection_repo_pb2_grpc.CollectionRepoStub(node.channel())
    repo.CreateCollection(collection_repo_pb2.CreateCollectionRequest(collection=collection_pb2.Collection(
        namespace=NS, name="there", message_type=common_pb2.MessageTypeRef(message_name="google.protobuf.Struct"))),
        metadata=md(admin), timeout=T)
    tok, _ = new_token(node, admin, "b-only", [(OTHER, ["read"])])
    cs = collection_server_pb2_grpc.CollectionServiceStub(node.channel())
    details = set()
    for name in ("there", "nowhere"):
        for token in (tok, None):
            with pytest.raises(grpc.RpcError) as e:
                cs.Get(collection_server_pb2.GetRequest(namespace=NS, collection_name=name, id="1"),
                       metadata=md(token), timeout=T)
            details.add((e.value.code(), e.value.details()))
    assert details == {(DENIED, "the token does not allow this call"),
                       (UNAUTH, "a valid bearer token is required")}


# ---- tokens ----

def test_token_create_list_revoke_and_restart(servers, tmp_path):
    data = tmp_path / "d"
    node = servers.node("--auth", "on", data_dir=data)
    admin = admin_token(node)
    stub = auth_stub(node)
    tok, tid = new_token(node, admin, "writer", [(NS, ["write"]), (OTHER, ["read"])])
    assert tok.startswith(f"col_{tid}_") and len(tok) == 85
    listed = stub.ListTokens(auth_pb2.ListTokensRequest(), metadata=md(admin), timeout=T).tokens
    mine = [t for t in listed if t.id == tid]
    assert len(mine) == 1 and mine[0].name == "writer" and not mine[0].secret_hash
    assert [(g.namespace, list(g.scopes)) for g in mine[0].grants] == [(NS, ["write"]), (OTHER, ["read"])]
    assert mine[0].created_by == admin[4:20]
    assert all(not t.secret_hash for t in listed)
    # The secret is nowhere in what the node keeps.
    for root, _, files in os.walk(data):
        for f in files:
            if f != "admin-token":
                assert tok[21:].encode() not in (open(os.path.join(root, f), "rb").read()), f
    cs = collection_server_pb2_grpc.CollectionServiceStub(node.channel())
    desc = collection_server_pb2.DescribeRequest(namespace=NS, collection_name="nothing")
    with pytest.raises(grpc.RpcError) as e:
        cs.Describe(desc, metadata=md(tok), timeout=T)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND  # allowed (write reads), nothing there
    # Bad requests.
    for req in (auth_pb2.CreateTokenRequest(name="x"),
                auth_pb2.CreateTokenRequest(name="x", grants=[auth_pb2.AuthGrant(namespace=NS, scopes=["fly"])]),
                auth_pb2.CreateTokenRequest(name="", grants=[auth_pb2.AuthGrant(namespace=NS, scopes=["read"])]),
                auth_pb2.CreateTokenRequest(name="x", grants=[auth_pb2.AuthGrant(namespace="../x", scopes=["read"])])):
        with pytest.raises(grpc.RpcError) as e:
            stub.CreateToken(req, metadata=md(admin), timeout=T)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A token kept survives a restart; a revoked one does not come back.
    gone, gone_id = new_token(node, admin, "short-lived", [(NS, ["read"])])
    stub.RevokeToken(auth_pb2.RevokeTokenRequest(id=gone_id), metadata=md(admin), timeout=T)
    with pytest.raises(grpc.RpcError) as e:
        stub.RevokeToken(auth_pb2.RevokeTokenRequest(id=gone_id), metadata=md(admin), timeout=T)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        cs.Describe(desc, metadata=md(gone), timeout=T)
    assert e.value.code() == UNAUTH
    node.close()
    node = servers.node("--auth", "on", data_dir=data)
    assert "first admin token" not in node.stderr()
    cs = collection_server_pb2_grpc.CollectionServiceStub(node.channel())
    with pytest.raises(grpc.RpcError) as e:
        cs.Describe(desc, metadata=md(tok), timeout=T)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        cs.Describe(desc, metadata=md(gone), timeout=T)
    assert e.value.code() == UNAUTH


def test_same_connection_tokens_and_revocation(servers, tmp_path):
    """The node remembers per connection what the last token stood for (a comparison instead
    of a digest and a lookup): tokens taking turns on one connection each keep their own
    scopes, and a token revoked is refused on a connection that used it a moment ago."""
    node = servers.node("--auth", "on", data_dir=tmp_path / "d")
    admin = admin_token(node)
    reader, reader_id = new_token(node, admin, "reader", [(NS, ["read"])])
    ch = node.channel()
    stub = auth_pb2_grpc.CollectorAuthStub(ch)
    cs = collection_server_pb2_grpc.CollectionServiceStub(ch)
    desc = collection_server_pb2.DescribeRequest(namespace=NS, collection_name="nothing")
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as e:
            cs.Describe(desc, metadata=md(reader), timeout=T)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND  # allowed: nothing there
        with pytest.raises(grpc.RpcError) as e:
            stub.ListTokens(auth_pb2.ListTokensRequest(), metadata=md(reader), timeout=T)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert stub.ListTokens(auth_pb2.ListTokensRequest(), metadata=md(admin), timeout=T).tokens
    # The reader's last call on this connection was a moment ago; now it is revoked, by
    # another connection (this one still remembers the reader).
    with pytest.raises(grpc.RpcError) as e:
        cs.Describe(desc, metadata=md(reader), timeout=T)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    other = grpc.insecure_channel(f"127.0.0.1:{node.port}")
    auth_pb2_grpc.CollectorAuthStub(other).RevokeToken(
        auth_pb2.RevokeTokenRequest(id=reader_id), metadata=md(admin), timeout=T)
    other.close()
    with pytest.raises(grpc.RpcError) as e:
        cs.Describe(desc, metadata=md(reader), timeout=T)
    assert e.value.code() == UNAUTH
    # A token that differs from the remembered one in its last character is no match.
    stub.ListTokens(auth_pb2.ListTokensRequest(), metadata=md(admin), timeout=T)
    with pytest.raises(grpc.RpcError) as e:
        stub.ListTokens(auth_pb2.ListTokensRequest(),
                        metadata=md(admin[:-1] + ("0" if admin[-1] != "0" else "1")), timeout=T)
    assert e.value.code() == UNAUTH


def test_first_admin_token(servers, tmp_path):
    node = auth_node(servers)
    path = node.data_dir / "system" / "admin-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    tok = path.read_text().strip()
    assert tok in node.stderr()  # printed once, at the first start
    # From a file the operator names: made there when missing, read when present.
    f = tmp_path / "admin.tok"
    n2 = auth_node(servers, "--admin-token-file", f)
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    t2 = f.read_text().strip()
    assert auth_stub(n2).ListTokens(auth_pb2.ListTokensRequest(), metadata=md(t2), timeout=T).tokens
    given = tmp_path / "given.tok"
    given.write_text("col_00112233445566ff_" + "ab" * 32 + "\n")
    n3 = auth_node(servers, "--admin-token-file", given)
    assert auth_stub(n3).ListTokens(auth_pb2.ListTokensRequest(), metadata=md(given.read_text().strip()),
                                    timeout=T).tokens
    bad = tmp_path / "bad.tok"
    bad.write_text("hunter2\n")
    with pytest.raises(Exception):
        auth_node(servers, "--admin-token-file", bad, timeout=5)


def test_auth_off_is_loud_and_open(servers):
    node = servers.node("--auth", "off")
    assert "auth: OFF" in node.stderr()
    auth_stub(node).ListTokens(auth_pb2.ListTokensRequest(), timeout=T)


def test_health_and_reflection_open_unless_closed(servers):
    node = auth_node(servers)
    health_pb2_grpc.HealthStub(node.channel()).Check(health_pb2.HealthCheckRequest(), timeout=T)
    closed = auth_node(servers, "--auth-open", "none")
    with pytest.raises(grpc.RpcError) as e:
        health_pb2_grpc.HealthStub(closed.channel()).Check(health_pb2.HealthCheckRequest(), timeout=T)
    assert e.value.code() == UNAUTH
    health_pb2_grpc.HealthStub(closed.channel()).Check(health_pb2.HealthCheckRequest(),
                                                      metadata=md(admin_token(closed)), timeout=T)


# ---- the audit log ----

def test_audit_records_admin_actions_and_refusals(servers):
    node = auth_node(servers)
    admin = admin_token(node)
    tok, tid = new_token(node, admin, "auditee", [(NS, ["read"])])
    cs = collection_server_pb2_grpc.CollectionServiceStub(node.channel())
    with pytest.raises(grpc.RpcError):
        cs.Delete(collection_server_pb2.DeleteRequest(namespace=NS, collection_name="x", id="1"),
                  metadata=md(tok), timeout=T)
    with pytest.raises(grpc.RpcError):
        cs.Get(collection_server_pb2.GetRequest(namespace=NS, collection_name="x", id="1"), timeout=T)
    # Reads are not recorded, nor Meta.
    cs.Meta(collection_server_pb2.MetaRequest(), metadata=md(tok), timeout=T)
    with pytest.raises(grpc.RpcError):
        cs.Get(collection_server_pb2.GetRequest(namespace=NS, collection_name="x", id="1"),
               metadata=md(tok), timeout=T)
    stub = auth_stub(node)
    want = {("CreateToken", 0), ("Delete", 7), ("Get", 16)}
    deadline = time.time() + T
    while True:
        entries = stub.ListAudit(auth_pb2.ListAuditRequest(), metadata=md(admin), timeout=T).entries
        got = {(e.method.rsplit("/", 1)[1], e.code) for e in entries}
        if want <= got or time.time() > deadline:
            break
        time.sleep(0.1)
    assert got == want, entries
    by = {e.method.rsplit("/", 1)[1]: e for e in entries}
    assert by["CreateToken"].who.startswith(admin[4:20]) and by["CreateToken"].namespace == "*"
    assert by["Delete"].who == f"{tid} (auditee)" and by["Delete"].namespace == NS
    assert by["Get"].who == ""
    for e in entries:
        assert e.peer.startswith("127.0.0.1:") and abs(e.time / 1000 - time.time()) < 60
    seqs = [e.seq for e in entries]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    after = stub.ListAudit(auth_pb2.ListAuditRequest(after_seq=seqs[0], limit=1), metadata=md(admin), timeout=T)
    assert [e.seq for e in after.entries] == [seqs[1]]
    with pytest.raises(grpc.RpcError) as e:
        stub.ListAudit(auth_pb2.ListAuditRequest(), metadata=md(tok), timeout=T)
    assert e.value.code() == DENIED


# ---- TLS, the mesh, Dispatch ----

def test_tokens_over_tls(servers, tmp_path):
    from test_tls import check, secure
    from tls_util import make_ca, make_cert
    ca = make_ca(tmp_path)
    cert, key = make_cert(tmp_path, "server", "localhost")
    node = servers.node("--auth", "on", "--tls-cert", cert, "--tls-key", key)
    pki = {"ca": ca}
    ch = secure(node, pki)
    assert check(ch) == health_pb2.HealthCheckResponse.SERVING
    stub = auth_pb2_grpc.CollectorAuthStub(ch)
    with pytest.raises(grpc.RpcError) as e:
        stub.ListTokens(auth_pb2.ListTokensRequest(), timeout=T)
    assert e.value.code() == UNAUTH
    assert stub.ListTokens(auth_pb2.ListTokensRequest(), metadata=md(admin_token(node)), timeout=T).tokens


def test_dispatch_runs_with_the_callers_rights(servers):
    """Dispatch in NS of a Create whose request names another namespace: the loopback call
    carries the caller's token, so the inner Create is refused where the caller has no
    right, and allowed where it has."""
    node = auth_node(servers)
    admin = admin_token(node)
    # The node's own services are registered in the default namespace (the registry's
    # validation), so the Dispatch runs there.
    NS = "default"
    for ns in (NS, OTHER):
        collection_repo_pb2_grpc.CollectionRepoStub(node.channel()).CreateCollection(
            collection_repo_pb2.CreateCollectionRequest(collection=collection_pb2.Collection(
                namespace=ns, name="x", message_type=common_pb2.MessageTypeRef(message_name="google.protobuf.Struct"))),
            metadata=md(admin), timeout=T)
    tok, _ = new_token(node, admin, "a-writer", [(NS, ["write"])])
    disp = dispatcher_pb2_grpc.CollectiveDispatcherStub(node.channel())
    item = any_pb2.Any(type_url="type.googleapis.com/google.protobuf.Struct", value=b"")

    def dispatch(inner_ns):
        inner = any_pb2.Any()
        inner.Pack(collection_server_pb2.CreateRequest(namespace=inner_ns, collection_name="x", item=item))
        return disp.Dispatch(dispatcher_pb2.DispatchRequest(
            namespace=NS, service=common_pb2.ServiceTypeRef(service_name="collector.CollectionService"),
            method_name="Create", input=inner), metadata=md(tok), timeout=T)

    r = dispatch(NS)
    assert r.status.code == common_pb2.Status.OK, r
    try:
        r = dispatch(OTHER)
        refused = r.status.code == common_pb2.Status.PERMISSION_DENIED
    except grpc.RpcError as e:
        refused = e.code() == DENIED
    assert refused
    cs = collection_server_pb2_grpc.CollectionServiceStub(node.channel())
    listed = cs.List(collection_server_pb2.ListRequest(namespace=OTHER, collection_name="x"),
                     metadata=md(admin), timeout=T)
    assert not listed.items


def test_mesh_links_with_the_mesh_token(servers, tmp_path):
    """Two nodes with auth on and one mesh token file link and Dispatch to each other; a
    node without the file cannot."""
    import mesh_util
    mesh = tmp_path / "mesh.tok"
    a = mesh_util.start(servers, "node-a", "--auth", "on", "--mesh-token-file", mesh)
    b = mesh_util.start(servers, "node-b", "--auth", "on", "--mesh-token-file", mesh)
    c = mesh_util.start(servers, "node-c", "--auth", "on")
    assert stat.S_IMODE(mesh.stat().st_mode) == 0o600
    da = dispatcher_pb2_grpc.CollectiveDispatcherStub(a.channel())
    ta = admin_token(a)
    da.Link(dispatcher_pb2.LinkRequest(address=b.address), metadata=md(ta), timeout=T)
    # Without the admin scope, no Link.
    with pytest.raises(grpc.RpcError) as e:
        da.Link(dispatcher_pb2.LinkRequest(address=c.address), timeout=T)
    assert e.value.code() == UNAUTH

    def up(node, tok, peer_id):
        r = dispatcher_pb2_grpc.CollectiveDispatcherStub(node.channel()).ListPeers(
            dispatcher_pb2.ListPeersRequest(), metadata=md(tok), timeout=T)
        return any(x.id == peer_id and x.is_direct_peer for x in r.collectors)

    deadline = time.time() + 20
    while not up(a, ta, "node-b") and time.time() < deadline:
        time.sleep(0.2)
    assert up(a, ta, "node-b")
    # A Dispatch to node-b through node-a, with node-a's token: node-b takes it from node-a.
    inner = any_pb2.Any()
    inner.Pack(collection_repo_pb2.DiscoverRequest(namespace="default"))
    r = da.Dispatch(dispatcher_pb2.DispatchRequest(
        namespace="default", service=common_pb2.ServiceTypeRef(service_name="collector.CollectionRepo"),
        method_name="Discover", input=inner, target_collector_id="node-b"), metadata=md(ta), timeout=T)
    assert r.status.code == common_pb2.Status.OK and r.handled_by_collector_id == "node-b", r
    # node-c has no mesh token: its Connect is refused by node-a, so it never links.
    dc = dispatcher_pb2_grpc.CollectiveDispatcherStub(c.channel())
    try:
        dc.Link(dispatcher_pb2.LinkRequest(address=a.address), metadata=md(admin_token(c)), timeout=T)
    except grpc.RpcError:
        pass
    time.sleep(1)
    assert not up(c, admin_token(c), "node-a")


def test_registered_handler_calls_need_write_and_never_see_the_token(servers):
    """A call to a registered service served by another process (the fallback's forwarded
    method): a writer of the namespace may call it, a reader may not, and the handler gets
    no authorization header."""
    from test_handler_forward import MSG, Handler, stub
    from registry_util import Reg
    FWD_NS = "fwdauth"

    class Seeing(Handler):
        def unary(self, req, ctx):
            got = dict(ctx.invocation_metadata())
            return MSG(text=f"{got.get('authorization', 'none')}|{got.get('x-token', '')}", n=req.n + 1)

    node = auth_node(servers)
    admin = admin_token(node)
    h = Seeing()
    try:
        reg = Reg(node)
        r = reg.stub.RegisterService(_service_req(FWD_NS, h.endpoint), metadata=md(admin), timeout=T)
        assert r.status.code == 0, r
        writer, _ = new_token(node, admin, "fwd-writer", [(FWD_NS, ["write"])])
        reader, _ = new_token(node, admin, "fwd-reader", [(FWD_NS, ["read"])])
        call = stub(node.channel(), "Unary")
        hdrs = [("x-collector-namespace", FWD_NS), ("x-token", "seen")]
        out = call(MSG(text="hi", n=1), metadata=md(writer) + hdrs, timeout=T)
        assert (out.text, out.n) == ("none|seen", 2)
        for tok, code in ((reader, DENIED), (None, UNAUTH)):
            with pytest.raises(grpc.RpcError) as e:
                call(MSG(text="hi"), metadata=md(tok) + hdrs, timeout=T)
            assert e.value.code() == code
    finally:
        h.stop()


def _service_req(ns, endpoint):
    from test_handler_forward import echo_file
    from registry_util import Reg
    req = Reg.service_req(ns, echo_file().service[0], echo_file())
    req.handler_endpoint = endpoint
    return req


def test_client_certificate_stands_for_a_token(servers, tmp_path):
    """With mTLS, a token made with cert_subject is what a client presenting a certificate
    of that subject (and no bearer token) acts as; another certificate of the same CA is
    UNAUTHENTICATED, and a bearer token still wins over the certificate."""
    from test_tls import secure
    from tls_util import make_ca, make_cert
    ca = make_ca(tmp_path)
    cert, key = make_cert(tmp_path, "server", "localhost")
    alice = make_cert(tmp_path, "alice", "alice")
    bob = make_cert(tmp_path, "bob", "bob")
    node = servers.node("--auth", "on", "--tls-cert", cert, "--tls-key", key, "--tls-client-ca", ca)
    admin = admin_token(node)
    pki = {"ca": ca}
    as_alice = secure(node, pki, client=alice)
    stub = auth_pb2_grpc.CollectorAuthStub(as_alice)
    r = stub.CreateToken(auth_pb2.CreateTokenRequest(
        name="alice", cert_subject="/CN=alice", grants=[auth_pb2.AuthGrant(namespace=NS, scopes=["read"])]),
        metadata=md(admin), timeout=T)
    assert r.info.cert_subject == "/CN=alice"
    with pytest.raises(grpc.RpcError) as e:
        stub.CreateToken(auth_pb2.CreateTokenRequest(
            name="again", cert_subject="/CN=alice", grants=[auth_pb2.AuthGrant(namespace=NS, scopes=["read"])]),
            metadata=md(admin), timeout=T)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    cs = collection_server_pb2_grpc.CollectionServiceStub(as_alice)
    desc = collection_server_pb2.DescribeRequest(namespace=NS, collection_name="nothing")
    with pytest.raises(grpc.RpcError) as e:
        cs.Describe(desc, timeout=T)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND  # allowed: read in NS
    with pytest.raises(grpc.RpcError) as e:
        cs.Describe(collection_server_pb2.DescribeRequest(namespace=OTHER, collection_name="x"), timeout=T)
    assert e.value.code() == DENIED
    with pytest.raises(grpc.RpcError) as e:
        stub.ListTokens(auth_pb2.ListTokensRequest(), timeout=T)
    assert e.value.code() == DENIED
    # The bearer token wins: alice's connection acts as the admin with it.
    assert [t for t in stub.ListTokens(auth_pb2.ListTokensRequest(), metadata=md(admin), timeout=T).tokens
            if t.cert_subject == "/CN=alice"]
    as_bob = collection_server_pb2_grpc.CollectionServiceStub(secure(node, pki, client=bob))
    with pytest.raises(grpc.RpcError) as e:
        as_bob.Describe(desc, timeout=T)
    assert e.value.code() == UNAUTH
    # Revoked: the certificate stands for nothing any more.
    stub.RevokeToken(auth_pb2.RevokeTokenRequest(id=r.info.id), metadata=md(admin), timeout=T)
    with pytest.raises(grpc.RpcError) as e:
        cs.Describe(desc, timeout=T)
    assert e.value.code() == UNAUTH


def test_empty_client_stream_is_checked_too(servers):
    """A client stream that ends before its first message is judged on the metadata's
    namespace: the handler never runs for a caller without the scope."""
    node = auth_node(servers)
    admin = admin_token(node)
    reader, _ = new_token(node, admin, "r", [(NS, ["read"])])
    writer, _ = new_token(node, admin, "w", [(NS, ["write"])])
    put = node.channel().stream_unary("/collector.CollectionService/PutFile",
                                      lambda x: x, lambda b: b)
    for tok, code in ((None, UNAUTH), (reader, DENIED)):
        with pytest.raises(grpc.RpcError) as e:
            put(iter([]), metadata=md(tok) + [("x-collector-namespace", NS)], timeout=T)
        assert e.value.code() == code
    with pytest.raises(grpc.RpcError) as e:
        put(iter([]), metadata=md(writer) + [("x-collector-namespace", NS)], timeout=T)
    assert e.value.code() not in (UNAUTH, DENIED)  # the handler's own answer


def test_workflow_tasks_run_in_their_namespace_only(servers):
    """The worker's tasks call the node itself with the local credential: read and write in
    the workflow's namespace. A task whose request names another namespace is refused."""
    from google.protobuf import descriptor_pb2
    from collector import worker_pb2, worker_pb2_grpc
    from google.protobuf import struct_pb2
    from wf_util import DONE, definition, task

    def struct_any(**kv):
        st = struct_pb2.Struct()
        st.update(kv)
        a = any_pb2.Any()
        a.Pack(st)
        return a

    node = auth_node(servers)
    admin = admin_token(node)
    WNS = "wfa"
    reg = registry_pb2_grpc.CollectorRegistryStub(node.channel())
    for module in (collection_repo_pb2, collection_server_pb2):
        fdp = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(fdp)
        for sd in fdp.service:
            r = reg.RegisterService(registry_pb2.RegisterServiceRequest(
                namespace=WNS, service_descriptor=sd, file_descriptor=fdp), metadata=md(admin), timeout=T)
            assert r.status.code == 0
    repo = collection_repo_pb2_grpc.CollectionRepoStub(node.channel())
    for ns in (WNS, OTHER):
        repo.CreateCollection(collection_repo_pb2.CreateCollectionRequest(collection=collection_pb2.Collection(
            namespace=ns, name="items")), metadata=md(admin), timeout=T)
    writer, _ = new_token(node, admin, "wf-writer", [(WNS, ["write", "register"])])
    wk = worker_pb2_grpc.CollectiveWorkerStub(node.channel())
    item = {"@type": "type.googleapis.com/google.protobuf.Struct", "value": {"made": "by a workflow"}}

    def run(name, ns_of_task):
        d = definition(WNS, name, [task("put", "Create", service_name="collector.CollectionService",
                                        config={"namespace": ns_of_task, "collection_name": "items",
                                                "id": "$.input.tag", "item": item})],
                       input_type="google.protobuf.Struct")
        r = wk.RegisterWorkflow(worker_pb2.RegisterWorkflowRequest(workflow=d), metadata=md(writer), timeout=T)
        assert r.status.code == 0, r
        wid = wk.StartWorkflow(worker_pb2.StartWorkflowRequest(namespace=WNS, workflow_name=name,
                                                               input=struct_any(tag=name)),
                               metadata=md(writer), timeout=T).workflow_id
        end = time.monotonic() + 30
        while True:
            w = wk.GetWorkflowStatus(worker_pb2.GetWorkflowStatusRequest(namespace=WNS, workflow_id=wid),
                                     metadata=md(writer), timeout=T).workflow
            if w.state in DONE or time.monotonic() > end:
                return w

    assert run("own", WNS).state == worker_pb2.WORKFLOW_SUCCEEDED
    w = run("elsewhere", OTHER)
    assert w.state == worker_pb2.WORKFLOW_FAILED, w
    hist = wk.GetWorkflowHistory(worker_pb2.GetWorkflowHistoryRequest(namespace=WNS, workflow_id=w.id),
                                 metadata=md(writer), timeout=T).executions
    assert [x.error.details["grpc_code"] for x in hist] == ["PERMISSION_DENIED"], hist
    cs = collection_server_pb2_grpc.CollectionServiceStub(node.channel())
    got = cs.List(collection_server_pb2.ListRequest(namespace=OTHER, collection_name="items"),
                  metadata=md(admin), timeout=T)
    assert not got.items
    got = cs.List(collection_server_pb2.ListRequest(namespace=WNS, collection_name="items"),
                  metadata=md(admin), timeout=T)
    assert len(got.items) == 1
