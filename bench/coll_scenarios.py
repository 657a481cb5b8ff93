"""The Collections part of the benchmark (`bench/run.py --only collections`): CollectionService
Create, Get and Search on a real node (build/collector, pinned to core 0, one reactor),
loaded from core 1 by bench/loadgen with requests prepared in advance, and beside each the
in-process limit: bench/store_inproc running the store's own writer and reader straight on
a records.db (same schema, WAL, synchronous=FULL), pinned to core 0 as well. Node and
in-process runs take turns, so that each ratio compares runs made minutes apart at most.

Records are collector.Collection messages of ~1 KB (compiled into the node, so no type is
registered): 8 strings of 16 words drawn from a vocabulary of 10,000 made-up words fill
indexed_fields, which gives full-text search real text; server_endpoint takes 1,000 values
and is the collection's indexed field, for the filter query.

  Create  50x10, new records (empty id: the node makes a UUIDv7). With group commit: into
          the collection of 100,000 records, after Get and Search; in-process: 500 inserts
          per transaction into a copy of it taken before (a fresh copy each run). With
          --store-group-max 1, on a node of its own, into an empty collection; in-process:
          one insert per transaction into a new database (an fsync per commit bounds both,
          whatever the size).
  Get     50x10, random ids among 100,000 preloaded records.
  Search  one word (full text, best first) and server_endpoint = one value (filter), limit
          20, at 1x1 and 4x4 (in-process: 1 and 16 threads), over the same records.

Untyped (node rows "untyped JSON"): the same records again, as upstream clients write them
into a collection made without a message type: each an Any whose value is the JSON object
text of the record (proto field names) under type.googleapis.com/unknown, in a collection
of their own with the same indexed field. Create, Get and Search as above (node only), the
100,000 records preloaded beside the typed ones, so that the two compare on one node.
"""
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

from benchlib import SERVER_CORE, Server, fmt, machine, median_of, ratio, run_loadgen

RECORDS = 100_000
CREATE_BODIES = 20_000  # distinct Create bodies, cycled
VOCABULARY = 10_000
QUERIES = 100  # distinct search queries of each kind, cycled
LIMIT = 20
NS, TYPE, INDEXED = "bench", "collector.Collection", "server_endpoint"
UNTYPED_URL = "type.googleapis.com/unknown"  # what upstream's untyped records carry
UNTYPED = "node, untyped JSON"
SVC = "/collector.CollectionService/"
INPROC_THREADS = 4  # the node's pool on this machine: two threads per core
INPROC_BATCH = 500  # the most requests the node can group at 50x10


def stubs(build):
    """The Python stubs (tests/gen_stubs.sh), made once per build tree."""
    out = Path(build) / "pygen"
    if not (out / "collector" / "collection_server_pb2.py").exists():
        subprocess.run([str(Path(__file__).resolve().parents[1] / "tests" / "gen_stubs.sh"),
                        str(out)], check=True)
    sys.path.insert(0, str(out))


def frame(msg):
    b = msg.SerializeToString()
    return struct.pack(">BI", 0, len(b)) + b


def endpoint(i):
    return f"host-{i % 1000:03d}.bench:50051"


def write_requests(tmp):
    """The request files for loadgen and the query files for store_inproc."""
    from google.protobuf import any_pb2, json_format, struct_pb2
    from collector import collection_pb2
    from collector import collection_server_pb2 as cs

    rng = random.Random(1)
    vocab = set()
    while len(vocab) < VOCABULARY:
        vocab.add("".join(rng.choice("bcdfghjklmnprstvz") + rng.choice("aeiou")
                          for _ in range(rng.randint(2, 4))))
    vocab = sorted(vocab)
    f = {k: Path(tmp) / f"{k}.bin"
         for k in ("create", "create_records", "preload", "get", "text", "filter",
                   "u_create", "u_preload", "u_get", "u_text", "u_filter")}
    ids = [f"rec-{i:06d}" for i in range(RECORDS)]
    size = 0
    with open(f["create"], "wb") as create, open(f["create_records"], "wb") as onto, \
            open(f["preload"], "wb") as preload, open(f["u_preload"], "wb") as u_preload, \
            open(f["u_create"], "wb") as u_create:
        for i in range(RECORDS):
            m = collection_pb2.Collection(namespace=NS, name=ids[i], server_endpoint=endpoint(i),
                                          indexed_fields=[" ".join(rng.choices(vocab, k=16))
                                                          for _ in range(8)])
            m.metadata.labels["shard"] = f"s{i % 16}"
            item = any_pb2.Any(type_url="type.googleapis.com/" + TYPE, value=m.SerializeToString())
            size += len(item.value)
            preload.write(frame(cs.CreateRequest(namespace=NS, collection_name="records",
                                                 item=item, id=ids[i])))
            u_item = any_pb2.Any(type_url=UNTYPED_URL, value=json.dumps(
                json_format.MessageToDict(m, preserving_proto_field_name=True),
                separators=(",", ":")).encode())
            u_preload.write(frame(cs.CreateRequest(namespace=NS, collection_name="untyped",
                                                   item=u_item, id=ids[i])))
            if i < CREATE_BODIES:
                for out, name in ((create, "create"), (onto, "records")):
                    out.write(frame(cs.CreateRequest(namespace=NS, collection_name=name,
                                                     item=item)))
                u_create.write(frame(cs.CreateRequest(namespace=NS, collection_name="untyped",
                                                      item=u_item)))
    rng.shuffle(ids)
    words = rng.sample(vocab, QUERIES)
    hosts = [endpoint(i) for i in rng.sample(range(1000), QUERIES)]
    for pre, coll in (("", "records"), ("u_", "untyped")):
        f[pre + "get"].write_bytes(b"".join(frame(cs.GetRequest(
            namespace=NS, collection_name=coll, id=i)) for i in ids))
        f[pre + "text"].write_bytes(b"".join(frame(cs.SearchRequest(
            namespace=NS, collection_name=coll, full_text=w, limit=LIMIT)) for w in words))
        f[pre + "filter"].write_bytes(b"".join(frame(cs.SearchRequest(
            namespace=NS, collection_name=coll, limit=LIMIT, filters={INDEXED: cs.Filter(
                operator=cs.OP_EQUALS, value=struct_pb2.Value(string_value=h))}))
            for h in hosts))
    (Path(tmp) / "text.q").write_text("".join(f"text {w}\n" for w in words))
    (Path(tmp) / "filter.q").write_text("".join(f"eq {INDEXED} {h}\n" for h in hosts))
    return f, size / RECORDS


def start_node(build, data, *flags):
    return Server([str(Path(build) / "collector"), "--listen", "127.0.0.1:0", "--auth", "off", "--data", str(data),
                   "--threads", "1", "--log-level", "warn", *flags])


def grpc_setup(port, names):
    """Creates the collections; returns a function giving a Search's total_count."""
    import grpc
    from collector import collection_pb2, collection_repo_pb2, collection_repo_pb2_grpc
    from collector import collection_server_pb2 as cs
    from collector import collection_server_pb2_grpc, common_pb2

    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    repo = collection_repo_pb2_grpc.CollectionRepoStub(ch)
    for name in names:
        # "untyped": made without a message type, as upstream clients make them.
        c = collection_pb2.Collection(namespace=NS, name=name, indexed_fields=[INDEXED])
        if name != "untyped":
            c.message_type.CopyFrom(common_pb2.MessageTypeRef(message_name=TYPE))
        repo.CreateCollection(collection_repo_pb2.CreateCollectionRequest(collection=c),
                              timeout=30)
    svc = collection_server_pb2_grpc.CollectionServiceStub(ch)

    def records(name="records"):
        return svc.Describe(cs.DescribeRequest(namespace=NS, collection_name=name),
                            timeout=30).record_count

    def matches(path):
        """Mean total_count and results of the searches in a request file."""
        reqs, raw = [], Path(path).read_bytes()
        while raw:
            n = struct.unpack(">I", raw[1:5])[0]
            reqs.append(cs.SearchRequest.FromString(raw[5:5 + n]))
            raw = raw[5 + n:]
        rs = [svc.Search(r, timeout=30) for r in reqs]
        return (sum(r.total_count for r in rs) / len(rs), sum(len(r.results) for r in rs) / len(rs))

    return records, matches


def node_run(build, srv, conns, streams, seconds, path, requests):
    cpu0 = srv.cpu_seconds()
    r = run_loadgen(build, srv.port, conns, streams, seconds,
                    ["--path", SVC + path, "--requests", str(requests)])
    # The warm-up second is served too: spread CPU over every call served.
    r["cpu_us_per_call"] = (srv.cpu_seconds() - cpu0) * 1e6 / (r["calls"] + r["rps"])
    return r


def inproc_run(build, seconds, *args):
    argv = ["taskset", "-c", SERVER_CORE, str(Path(build) / "bench" / "store_inproc"), *args,
            "--seconds", str(seconds)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(f"store_inproc {args[0]} failed: {out.stderr}")
    r = json.loads(lines[-1])
    return {"rps": r["ops_s"], "p50_us": r["p50_us"], "p99_us": r["p99_us"],
            "matches": r["matches"] or None}


def paired(node_fn, inproc_fn, runs):
    """Medians of runs of each, node and in-process taking turns after a warm-up of each:
    the machine's speed and fsync times move over minutes, and a ratio should compare runs
    that met the same machine. The in-process runs go while the node is up but idle."""
    node_fn()
    inproc_fn()
    rs = [(node_fn(), inproc_fn()) for _ in range(runs)]
    return tuple({k: median_of([r[i] for r in rs], k) for k in rs[0][i]} for i in (0, 1))


def node_only(node_fn, runs):
    """Medians of runs of the node alone, after a warm-up."""
    node_fn()
    rs = [node_fn() for _ in range(runs)]
    return {k: median_of(rs, k) for k in rs[0]}


def run(args, tmp):
    stubs(args.build)
    t = time.time()
    files, record_bytes = write_requests(tmp)
    print(f"collections: requests written in {time.time() - t:.0f} s, records of "
          f"{record_bytes:.0f} bytes", flush=True)
    b, secs, runs = args.build, args.seconds, args.runs
    res = {"Create 50x10": {}, "Get 50x10": {}}
    for kind in ("full text", "filter"):
        for c in ("1x1", "4x4"):
            res[f"Search {kind} {c}"] = {}
    load_before = os.getloadavg()[0]

    create = res["Create 50x10"]
    n = iter(range(1000))

    def inproc_create(src, batch, copy_of=None):
        into = Path(tmp) / f"inproc{next(n)}"
        extra = []
        if copy_of:
            shutil.copytree(copy_of, into)
            extra = ["--existing"]
        try:
            return inproc_run(b, secs, "create", "--src", src, "--dir", str(into), "--batch",
                              str(batch), "--threads", str(INPROC_THREADS), *extra)
        finally:
            shutil.rmtree(into, ignore_errors=True)

    def node_create(srv):
        return node_run(b, srv, 50, 10, secs, "Create", files["create"])

    srv = start_node(b, Path(tmp) / "one", "--store-group-max", "1")
    try:
        grpc_setup(srv.port, ["create"])
        # The in-process inserts take the records the node's warm-up stored.
        src = str(Path(tmp) / "one" / NS / "create" / "records.db")
        create["node, --store-group-max 1"], create["in-process, one transaction per insert"] = \
            paired(lambda: node_create(srv), lambda: inproc_create(src, 1), runs)
    finally:
        srv.stop()

    data = Path(tmp) / "grouped"
    db = str(data / NS / "records" / "records.db")
    srv = start_node(b, data)
    try:
        records, matches = grpc_setup(srv.port, ["records", "untyped"])
        preload = {}
        for coll, key, pre in (("records", "preload", ""), ("untyped", "u_preload", "untyped_")):
            r = run_loadgen(b, srv.port, 50, 10, 600,
                            ["--path", SVC + "Create", "--requests", str(files[key]), "--once"])
            preload[pre + "records"], preload[pre + "records_per_s"] = records(coll), r["rps"]
            if preload[pre + "records"] != RECORDS:
                raise RuntimeError(f"{coll} preload left {preload[pre + 'records']} records, "
                                   f"not {RECORDS}")
            print(f"collections: {RECORDS:,} {coll} records preloaded at {r['rps']:,.0f}/s",
                  flush=True)
        # The node is idle: records.db and its WAL together are the collection as it is.
        snapshot = Path(tmp) / "records_copy"
        snapshot.mkdir()
        for suffix in ("", "-wal"):
            if Path(db + suffix).exists():
                shutil.copy(db + suffix, snapshot)
        get = res["Get 50x10"]
        get["node"], get[f"in-process, {INPROC_THREADS} threads"] = paired(
            lambda: node_run(b, srv, 50, 10, secs, "Get", files["get"]),
            lambda: inproc_run(b, secs, "get", "--src", db, "--threads", str(INPROC_THREADS)),
            runs)
        get[UNTYPED] = node_only(lambda: node_run(b, srv, 50, 10, secs, "Get", files["u_get"]),
                                 runs)
        for kind, key in (("full text", "text"), ("filter", "filter")):
            found = matches(files[key])
            for c, (conns, streams), threads in (("1x1", (1, 1), 1), ("4x4", (4, 4), 16)):
                node, inproc = paired(
                    lambda: node_run(b, srv, conns, streams, secs, "Search", files[key]),
                    lambda: inproc_run(b, secs, "search", "--src", db, "--queries",
                                       str(Path(tmp) / f"{key}.q"), "--limit", str(LIMIT),
                                       "--indexed", INDEXED, "--threads", str(threads)),
                    runs)
                node["matches"] = found[0]
                res[f"Search {kind} {c}"]["node"] = node
                res[f"Search {kind} {c}"][f"in-process, {threads} threads"] = inproc
                untyped = node_only(lambda: node_run(b, srv, conns, streams, secs, "Search",
                                                     files["u_" + key]), runs)
                untyped["matches"] = matches(files["u_" + key])[0]
                res[f"Search {kind} {c}"][UNTYPED] = untyped
        create["node, group commit"], create[f"in-process, {INPROC_BATCH} per transaction"] = \
            paired(lambda: node_run(b, srv, 50, 10, secs, "Create", files["create_records"]),
                   lambda: inproc_create(db, INPROC_BATCH, snapshot), runs)
        create[UNTYPED + ", group commit"] = node_only(
            lambda: node_run(b, srv, 50, 10, secs, "Create", files["u_create"]), runs)
    finally:
        srv.stop()
    return {"machine": machine(), "runs": runs, "seconds": secs, "records": RECORDS,
            "record_bytes": round(record_bytes), "preload": preload,
            "load_average_before": load_before, "results": res}


def tables(c):
    """Markdown: one table per scenario, then the ratios."""
    out = []
    for scen, rows in c["results"].items():
        out += [f"### {scen}", "",
                "| run | ops/s | p50 µs | p99 µs | server CPU µs/call | matches |",
                "| --- | --- | --- | --- | --- | --- |"]
        for name, r in rows.items():
            out.append(f"| {name} | {fmt(r['rps'])} | {fmt(r['p50_us'])} | {fmt(r['p99_us'])} | "
                       f"{fmt(r.get('cpu_us_per_call'))} | {fmt(r.get('matches'))} |")
        node = [r for k, r in rows.items() if k.startswith("node") and "untyped" not in k]
        untyped = [r for k, r in rows.items() if "untyped" in k]
        inproc = [r for k, r in rows.items() if k.startswith("in-process")]
        out.append("")
        if scen.startswith("Create"):
            g, one = rows["node, group commit"], rows["node, --store-group-max 1"]
            batched = rows[f"in-process, {INPROC_BATCH} per transaction"]
            single = rows["in-process, one transaction per insert"]
            out.append(f"group commit / one transaction per call: {ratio(g['rps'], one['rps'])} "
                       f"(target >= 20x; the in-process limit's own: "
                       f"{ratio(batched['rps'], single['rps'])}); node / in-process: grouped "
                       f"{ratio(g['rps'], batched['rps'])}, one per call "
                       f"{ratio(one['rps'], single['rps'])}")
        else:
            line = f"node / in-process: ops/s {ratio(node[0]['rps'], inproc[0]['rps'])}"
            if scen.endswith("1x1"):  # one call at a time: latencies compare too
                line += f", p50 latency {ratio(node[0]['p50_us'], inproc[0]['p50_us'])}"
            if scen.startswith("Search"):
                met = "met" if node[0]["p50_us"] < 5000 else "missed"
                line += f"; node p50 {node[0]['p50_us'] / 1000:.1f} ms (target < 5 ms: {met})"
            out.append(line)
        if untyped:
            typed = rows["node, group commit"] if scen.startswith("Create") else node[0]
            out.append(f"untyped JSON / typed, on the node: ops/s "
                       f"{ratio(untyped[0]['rps'], typed['rps'])}, p50 latency "
                       f"{ratio(untyped[0]['p50_us'], typed['p50_us'])}")
        out.append("")
    return "\n".join(out)


def docs(c):
    m = c["machine"]
    return "\n".join([
        "## Collections", "",
        "CollectionService on a real node (`build-bench/collector --threads 1`, pinned to core 0 "
        "with its pool and writer threads; load from core 1), beside the in-process limit: "
        "`bench/store_inproc` runs the store's own writer and reader (store/writer.h, "
        "store/reader.h) straight on a records.db with the same schema and durability (WAL, "
        "synchronous=FULL), without RPC or the store's threads, pinned to core 0 too. "
        f"Records: {c['records']:,} collector.Collection messages of ~{c['record_bytes']} bytes "
        "(made-up words in indexed_fields for full-text search; server_endpoint, 1,000 values, "
        "is the indexed field of the filter query); Search asks for 20 results, best first.", "",
        f"Machine: {m['cpu']}, {m['cores']} cores; {m['date']}; load average "
        f"{c['load_average_before']:.1f} before the run (the machine is shared: figures move "
        f"between runs). Median of {c['runs']} runs of {c['seconds']} s after a warm-up.", "",
        f"The {c['records']:,} records were preloaded through Create at 50x10 "
        f"({c['preload']['records_per_s']:,.0f} records/s). Create with group commit runs last, "
        "into that collection (it grows by every run); in-process, 500 per transaction, into a "
        "copy of it taken before (a fresh copy each run). Create with --store-group-max 1 runs "
        "on a node of its own, into an empty collection, and in-process one per transaction "
        "into a new database: an fsync per commit bounds both. In-process Create inserts "
        "records the node stored again under new ids, 4 threads taking turns on "
        "one connection (as requests on the node's writer), each insert making its record's "
        "full-text text from the JSON (store_writer_run, as the node's writer); the node also "
        "renders the JSON from the protobuf bytes, which the in-process run reads ready-made "
        "from the database. Node and in-process runs take turns (node, in-process, node, ...; "
        "the in-process ones while the node is up but idle, on its databases as they are), as "
        "the machine's speed and fsync times move over minutes. "
        "Matches is the mean count of records a search finds (its total_count). In-process "
        "latencies are per transaction or per read, on 4 (Get), 1 or 16 (Search) threads: "
        "they compare with the node's at 1x1 only.", "",
        "Untyped JSON: the same records as upstream clients write them into a collection "
        "made without a message type (each an Any whose value is the record's JSON object "
        "text, proto field names, under type.googleapis.com/unknown), with the same indexed "
        f"field; preloaded beside the typed ones "
        f"({c['preload'].get('untyped_records_per_s', 0):,.0f} records/s); node runs only.", "",
        "Command: `bench/run.py --only collections` (part of `make bench`).", "",
        tables(c)])
