#!/usr/bin/env node
// The gRPC interop client cases (grpc's doc/interop-test-descriptions.md) on stock
// @grpc/grpc-js, to check a grpc.testing.TestService server against a second real client.
//
//   node interop_client.js --server_host 127.0.0.1 --server_port N --test_case all|name[,...]
//                          [--use_tls=false|true --ca_file F [--server_host_override N]]
//                          [--proto_dir /usr/share/grpc-proto]
//
// Prints "PASS name" or "FAIL name: reason" per case; exits 1 if any case failed.
'use strict';

const http2 = require('node:http2');
const zlib = require('node:zlib');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const TIMEOUT_MS = 30000; // per call: a server that never answers fails the case, not the run
const CASE_TIMEOUT_MS = 60000;
const SPECIAL_MESSAGE = '\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \u{1f608}\t\n';
const ECHO_INITIAL = ['x-grpc-test-echo-initial', 'test_initial_metadata_value'];
const ECHO_TRAILING = ['x-grpc-test-echo-trailing-bin', Buffer.from([0xab, 0xab, 0xab])];
const S = grpc.status;

class CaseFailed extends Error {}

function check(cond, why) {
  if (!cond) throw new CaseFailed(why);
}

function codeName(code) {
  return Object.keys(S).find((k) => S[k] === code) || String(code);
}

function deadline(ms = TIMEOUT_MS) {
  return { deadline: Date.now() + ms };
}

function zeros(n) {
  return { body: Buffer.alloc(n) };
}

function checkPayload(payload, size, what = 'response') {
  const body = payload && payload.body ? payload.body : Buffer.alloc(0);
  check(body.length === size, `${what} payload is ${body.length} bytes, want ${size}`);
  check(body.equals(Buffer.alloc(size)), `${what} payload is not all zeros`);
}

function checkStatus(got, want, what = 'status') {
  const code = got ? got.code : undefined;
  const details = got ? got.details : undefined;
  check(code === want, `${what} ${codeName(code)} (${JSON.stringify(details)}), want ${codeName(want)}`);
}

// Unary and client-streaming calls: resolves once both the callback and the 'status' event
// came (grpc-js runs the callback first), with the initial metadata seen on the way.
function callbackCall(start) {
  return new Promise((resolve) => {
    const r = { err: null, resp: null, initial: null, status: null, call: null };
    let pending = 2;
    const done = () => {
      if (--pending === 0) resolve(r);
    };
    r.call = start((err, resp) => {
      r.err = err;
      r.resp = resp;
      done();
    });
    r.call.on('metadata', (md) => {
      r.initial = md;
    });
    r.call.on('status', (st) => {
      r.status = st;
      done();
    });
  });
}

// Reads a server- or bidi-streaming call one message at a time.
class Reader {
  constructor(call) {
    this.call = call;
    this.queue = [];
    this.waiters = [];
    this.initial = null;
    this.status = null;
    this.ended = false;
    this.finished = new Promise((resolve) => {
      this.resolveFinished = resolve;
    });
    call.on('metadata', (md) => {
      this.initial = md;
    });
    call.on('data', (m) => {
      const w = this.waiters.shift();
      if (w) w(m);
      else this.queue.push(m);
    });
    call.on('end', () => {
      this.ended = true;
      this.settle();
    });
    call.on('error', () => {
      // the status event carries the same code and details
    });
    call.on('status', (st) => {
      this.status = st;
      // data and 'end' may still be queued behind the status event
      setImmediate(() => this.settle(true));
    });
  }

  settle(force = false) {
    if (!this.status || (!this.ended && !force && this.status.code === S.OK)) return;
    for (const w of this.waiters.splice(0)) w(null);
    this.resolveFinished(this.status);
  }

  // The next message, or null once the call ended.
  next() {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.status && (this.ended || this.status.code !== S.OK)) return Promise.resolve(null);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  // Waits for the end; returns the status and the messages nobody read.
  async finish() {
    const status = await this.finished;
    return { status, rest: this.queue.splice(0) };
  }
}

function mdValues(md, key) {
  return md ? md.get(key) : [];
}

function checkEchoed(initial, status, what) {
  const got = mdValues(initial, ECHO_INITIAL[0]);
  check(got.length === 1 && got[0] === ECHO_INITIAL[1],
    `${what}: initial metadata ${ECHO_INITIAL[0]} = ${JSON.stringify(got)}`);
  const trailing = mdValues(status && status.metadata, ECHO_TRAILING[0]);
  check(trailing.length === 1 && Buffer.isBuffer(trailing[0]) && trailing[0].equals(ECHO_TRAILING[1]),
    `${what}: trailing metadata ${ECHO_TRAILING[0]} = ${JSON.stringify(trailing.map(String))}`);
}

function largeRequest(extra = {}) {
  return { response_size: 314159, payload: zeros(271828), ...extra };
}

function echoMetadata() {
  const md = new grpc.Metadata();
  md.add(ECHO_INITIAL[0], ECHO_INITIAL[1]);
  md.add(ECHO_TRAILING[0], ECHO_TRAILING[1]);
  return md;
}

// One unary call on plain HTTP/2 (node's own client, not grpc-js): grpc-js decompresses
// inside and hides the message flag, which server_compressed_unary must see.
// With TLS (tls: {ca, servername}) over https, with ALPN h2.
function rawUnary(target, path, body, tls) {
  return new Promise((resolve, reject) => {
    const session = tls
      ? http2.connect(`https://${target}`, { ca: tls.ca, servername: tls.servername })
      : http2.connect(`http://${target}`);
    session.on('error', reject);
    const req = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-accept-encoding': 'identity,gzip',
    });
    const out = { headers: {}, trailers: {}, chunks: [] };
    req.setTimeout(TIMEOUT_MS, () => req.close(http2.constants.NGHTTP2_CANCEL));
    req.on('response', (h) => {
      out.headers = h;
    });
    req.on('trailers', (t) => {
      out.trailers = t;
    });
    req.on('data', (c) => out.chunks.push(c));
    req.on('error', reject);
    req.on('close', () => {
      session.close();
      resolve({ headers: out.headers, trailers: out.trailers, body: Buffer.concat(out.chunks) });
    });
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(body.length, 1);
    req.end(Buffer.concat([prefix, body]));
  });
}

// ---------------------------------------------------------------------------------------
// The cases: each gets the context and throws CaseFailed to fail.

const cases = {
  async empty_unary(ctx) {
    const r = await callbackCall((cb) => ctx.stub.EmptyCall({}, deadline(), cb));
    check(!r.err, `unexpected status ${r.err && codeName(r.err.code)}: ${r.err && r.err.details}`);
    check(r.resp !== null && typeof r.resp === 'object', 'no response message');
  },

  async large_unary(ctx) {
    const r = await callbackCall((cb) => ctx.stub.UnaryCall(largeRequest(), deadline(), cb));
    checkStatus(r.status, S.OK);
    checkPayload(r.resp.payload, 314159);
  },

  async client_compressed_unary(ctx) {
    const probe = largeRequest({ expect_compressed: { value: true } });
    let r = await callbackCall((cb) => ctx.stub.UnaryCall(probe, deadline(), cb));
    checkStatus(r.status, S.INVALID_ARGUMENT, 'uncompressed probe: status');
    // grpc-js compresses only by channel option, hence the second client.
    r = await callbackCall((cb) => ctx.gzipStub.UnaryCall(probe, deadline(), cb));
    checkStatus(r.status, S.OK, 'compressed call: status');
    checkPayload(r.resp.payload, 314159, "compressed call's");
    const plain = largeRequest({ expect_compressed: { value: false } });
    r = await callbackCall((cb) => ctx.stub.UnaryCall(plain, deadline(), cb));
    checkStatus(r.status, S.OK, 'uncompressed call: status');
    checkPayload(r.resp.payload, 314159, "uncompressed call's");
  },

  async server_compressed_unary(ctx) {
    for (const compressed of [true, false]) {
      const what = `response_compressed=${compressed}`;
      const req = largeRequest({ response_compressed: { value: compressed } });
      const r = await callbackCall((cb) => ctx.stub.UnaryCall(req, deadline(), cb));
      checkStatus(r.status, S.OK, `${what}: status`);
      checkPayload(r.resp.payload, 314159, what);

      const raw = await rawUnary(ctx.target, '/grpc.testing.TestService/UnaryCall',
        ctx.unary.requestSerialize(req), ctx.tls);
      const status = raw.trailers['grpc-status'] ?? raw.headers['grpc-status'];
      check(status === '0', `${what}: raw probe got grpc-status ${status}`);
      check(raw.body.length >= 5, `${what}: raw probe got no message`);
      const flag = raw.body[0];
      const len = raw.body.readUInt32BE(1);
      check(raw.body.length === 5 + len, `${what}: raw probe got ${raw.body.length - 5} bytes, prefix says ${len}`);
      check(flag === (compressed ? 1 : 0), `${what}: message compressed flag is ${flag}`);
      let msg = raw.body.subarray(5);
      if (flag) {
        check(raw.headers['grpc-encoding'] === 'gzip', `${what}: grpc-encoding is ${raw.headers['grpc-encoding']}`);
        msg = zlib.gunzipSync(msg);
      }
      checkPayload(ctx.unary.responseDeserialize(msg).payload, 314159, `${what} (raw probe)`);
    }
  },

  async client_streaming(ctx) {
    const r = await callbackCall((cb) => {
      const call = ctx.stub.StreamingInputCall(deadline(), cb);
      for (const n of [27182, 8, 1828, 45904]) call.write({ payload: zeros(n) });
      call.end();
      return call;
    });
    checkStatus(r.status, S.OK);
    check(r.resp.aggregated_payload_size === 74922,
      `aggregated_payload_size ${r.resp.aggregated_payload_size}, want 74922`);
  },

  async server_streaming(ctx) {
    const sizes = [31415, 9, 2653, 58979];
    const rd = new Reader(ctx.stub.StreamingOutputCall(
      { response_parameters: sizes.map((size) => ({ size })) }, deadline()));
    const got = [];
    for (let m; (m = await rd.next()) !== null;) got.push(m);
    const { status } = await rd.finish();
    checkStatus(status, S.OK);
    check(got.length === 4, `${got.length} responses, want 4`);
    got.forEach((m, i) => checkPayload(m.payload, sizes[i], `response ${i}`));
  },

  async ping_pong(ctx) {
    const pairs = [[27182, 31415], [8, 9], [1828, 2653], [45904, 58979]];
    const call = ctx.stub.FullDuplexCall(deadline());
    const rd = new Reader(call);
    try {
      for (const [i, [reqSize, respSize]] of pairs.entries()) {
        call.write({ response_parameters: [{ size: respSize }], payload: zeros(reqSize) });
        const m = await rd.next();
        check(m !== null, `the call ended before response ${i}: ${rd.status && codeName(rd.status.code)}`);
        checkPayload(m.payload, respSize, `response ${i}`);
      }
      call.end();
      check((await rd.next()) === null, 'a response after the fourth');
      const { status, rest } = await rd.finish();
      check(rest.length === 0, `${rest.length} responses after the fourth`);
      checkStatus(status, S.OK);
    } finally {
      if (!rd.status) call.cancel();
    }
  },

  async empty_stream(ctx) {
    const call = ctx.stub.FullDuplexCall(deadline());
    const rd = new Reader(call);
    call.end();
    const { status, rest } = await rd.finish();
    checkStatus(status, S.OK);
    check(rest.length === 0, `${rest.length} responses, want none`);
  },

  async cancel_after_begin(ctx) {
    const r = await callbackCall((cb) => {
      const call = ctx.stub.StreamingInputCall(deadline(), cb);
      call.cancel();
      return call;
    });
    checkStatus(r.status, S.CANCELLED);
    check(r.err && r.err.code === S.CANCELLED, 'the callback did not report CANCELLED');
  },

  async cancel_after_first_response(ctx) {
    const call = ctx.stub.FullDuplexCall(deadline());
    const rd = new Reader(call);
    call.write({ response_parameters: [{ size: 31415 }], payload: zeros(27182) });
    const m = await rd.next();
    check(m !== null, `no response: ${rd.status && codeName(rd.status.code)}`);
    checkPayload(m.payload, 31415);
    call.cancel();
    const { status } = await rd.finish();
    checkStatus(status, S.CANCELLED);
  },

  async timeout_on_sleeping_server(ctx) {
    const call = ctx.stub.FullDuplexCall(deadline(1));
    const rd = new Reader(call);
    call.write({ payload: zeros(27182) });
    const { status, rest } = await rd.finish();
    check(rest.length === 0, `${rest.length} responses, want none`);
    checkStatus(status, S.DEADLINE_EXCEEDED);
  },

  async custom_metadata(ctx) {
    const r = await callbackCall((cb) => ctx.stub.UnaryCall(largeRequest(), echoMetadata(), deadline(), cb));
    checkStatus(r.status, S.OK, 'UnaryCall: status');
    checkPayload(r.resp.payload, 314159, 'UnaryCall');
    checkEchoed(r.initial, r.status, 'UnaryCall');

    const call = ctx.stub.FullDuplexCall(echoMetadata(), deadline());
    const rd = new Reader(call);
    call.write({ response_parameters: [{ size: 314159 }], payload: zeros(271828) });
    call.end();
    const got = [];
    for (let m; (m = await rd.next()) !== null;) got.push(m);
    const { status } = await rd.finish();
    checkStatus(status, S.OK, 'FullDuplexCall: status');
    check(got.length === 1, `FullDuplexCall: ${got.length} responses, want 1`);
    checkPayload(got[0].payload, 314159, 'FullDuplexCall');
    checkEchoed(rd.initial, status, 'FullDuplexCall');
  },

  async status_code_and_message(ctx) {
    await echoStatus(ctx, 'test status message', true);
  },

  async special_status_message(ctx) {
    await echoStatus(ctx, SPECIAL_MESSAGE, false);
  },

  async unimplemented_method(ctx) {
    const r = await callbackCall((cb) => ctx.stub.UnimplementedCall({}, deadline(), cb));
    checkStatus(r.status, S.UNIMPLEMENTED);
  },

  async unimplemented_service(ctx) {
    const r = await callbackCall((cb) => ctx.unimplementedStub.UnimplementedCall({}, deadline(), cb));
    checkStatus(r.status, S.UNIMPLEMENTED);
  },
};

async function echoStatus(ctx, message, duplex) {
  const responseStatus = { code: 2, message };
  const r = await callbackCall((cb) => ctx.stub.UnaryCall({ response_status: responseStatus }, deadline(), cb));
  checkStatus(r.status, S.UNKNOWN, 'UnaryCall: status');
  check(r.status.details === message,
    `UnaryCall: message ${JSON.stringify(r.status.details)}, want ${JSON.stringify(message)}`);
  if (!duplex) return;
  const call = ctx.stub.FullDuplexCall(deadline());
  const rd = new Reader(call);
  call.write({ response_status: responseStatus });
  call.end();
  const { status } = await rd.finish();
  checkStatus(status, S.UNKNOWN, 'FullDuplexCall: status');
  check(status.details === message,
    `FullDuplexCall: message ${JSON.stringify(status.details)}, want ${JSON.stringify(message)}`);
}

// ---------------------------------------------------------------------------------------

function usage(why) {
  process.stderr.write(`interop_client.js: ${why}\nusage: node interop_client.js --server_host H ` +
    '--server_port N --test_case all|name[,name...] [--use_tls=false] [--proto_dir DIR]\n');
  process.exit(2);
}

// Stock interop clients take "--flag=value"; "--flag value" is accepted as well.
function parseArgs(argv) {
  const known = ['server_host', 'server_port', 'test_case', 'use_tls', 'proto_dir', 'ca_file',
    'server_host_override'];
  const a = {
    server_host: '127.0.0.1',
    test_case: 'all',
    use_tls: 'false',
    server_host_override: 'localhost',
    proto_dir: process.env.GRPC_PROTO_DIR || '/usr/share/grpc-proto',
  };
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z_]+)(?:=(.*))?$/s.exec(argv[i]);
    if (!m || !known.includes(m[1])) usage(`unknown argument '${argv[i]}'`);
    let v = m[2];
    if (v === undefined) {
      if (i + 1 >= argv.length) usage(`--${m[1]} needs a value`);
      v = argv[++i];
    }
    a[m[1]] = v;
  }
  if (!/^\d+$/.test(a.server_port || '') || Number(a.server_port) > 65535) usage('--server_port N is required');
  a.tls = ['true', '1'].includes(a.use_tls);
  if (!a.tls && !['false', '0'].includes(a.use_tls)) usage('--use_tls needs true or false');
  if (a.tls && !a.ca_file) usage('--use_tls=true needs --ca_file (the embedded test CA of the stock clients is not here)');
  return a;
}

function withTimeout(promise, ms) {
  let t;
  const timeout = new Promise((_, reject) => {
    t = setTimeout(() => reject(new CaseFailed(`no result within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(t));
}

function oneLine(s) {
  return String(s).split(/\s+/).filter(Boolean).join(' ');
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const names = args.test_case === 'all' ? Object.keys(cases) : args.test_case.split(',').filter(Boolean);
  const unknown = names.filter((n) => !(n in cases));
  if (unknown.length || !names.length) usage(`unknown test case(s) ${unknown.join(',')}; known: ${Object.keys(cases).join(',')}`);

  const def = protoLoader.loadSync('grpc/testing/test.proto', {
    keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [args.proto_dir],
  });
  const testing = grpc.loadPackageDefinition(def).grpc.testing;
  const host = args.server_host;
  const target = host.includes(':') ? `[${host}]:${args.server_port}` : `${host}:${args.server_port}`;
  const creds = args.tls
    ? grpc.credentials.createSsl(require('fs').readFileSync(args.ca_file))
    : grpc.credentials.createInsecure();
  const opts = { 'grpc.enable_http_proxy': 0 };
  if (args.tls) opts['grpc.ssl_target_name_override'] = args.server_host_override;
  const ctx = {
    target,
    tls: args.tls ? { ca: require('fs').readFileSync(args.ca_file), servername: args.server_host_override } : null,
    unary: def['grpc.testing.TestService'].UnaryCall,
    stub: new testing.TestService(target, creds, opts),
    gzipStub: new testing.TestService(target, creds, { ...opts, 'grpc.default_compression_algorithm': 2 }),
    unimplementedStub: new testing.UnimplementedService(target, creds, opts),
  };

  let failed = 0;
  for (const name of names) {
    let why = null;
    try {
      await withTimeout(cases[name](ctx), CASE_TIMEOUT_MS);
    } catch (e) {
      why = e instanceof CaseFailed ? e.message : `${e.name}: ${e.message}`;
    }
    if (why === null) {
      console.log(`PASS ${name}`);
    } else {
      failed++;
      console.log(`FAIL ${name}: ${oneLine(why)}`);
    }
  }
  ctx.stub.close();
  ctx.gzipStub.close();
  ctx.unimplementedStub.close();
  // A call left open by a failed case must not keep the process alive.
  process.exitCode = failed ? 1 : 0;
  setTimeout(() => process.exit(process.exitCode), 200).unref();
}

main().catch((e) => {
  console.log(`FAIL driver: ${oneLine(e && e.stack ? e.stack : e)}`);
  process.exit(1);
});
