// node_server: grpc.testing.BenchmarkService UnaryCall on stock @grpc/grpc-js, a peer in
// `make bench` (bench/peers.py):
//
//   node server.js --port N
//
// Prints "listening on 127.0.0.1:PORT" once serving (N may be 0). grpc-js is the one
// tests/interop/node pins (its package-lock.json, installed by `npm ci`): one install for
// both. The two messages go through a codec written here (what protobufjs would do for
// them: the request's payload body copied out, a response body of response_size zero
// bytes, serialized into a new buffer); everything else is grpc-js's default.
'use strict';
const path = require('path');
const grpc = require(path.join(__dirname, '..', '..', '..', 'tests', 'interop', 'node',
  'node_modules', '@grpc', 'grpc-js'));

function uvarint(b, i) {
  let v = 0;
  let mul = 1;
  for (let n = 0; n < 10 && i < b.length; n++, i++) {
    v += (b[i] & 0x7f) * mul;
    mul *= 128;
    if (b[i] < 0x80) return [v, i + 1];
  }
  throw new Error('malformed varint');
}

// Calls fn(fieldNumber, wireType, value, start, end) for each field of b.
function fields(b, fn) {
  let i = 0;
  while (i < b.length) {
    const [tag, j] = uvarint(b, i);
    const field = Math.floor(tag / 8);
    const wt = tag & 7;
    if (wt === 0) {
      const [v, k] = uvarint(b, j);
      fn(field, wt, v, j, k);
      i = k;
    } else if (wt === 2) {
      const [len, k] = uvarint(b, j);
      if (k + len > b.length) throw new Error('truncated field');
      fn(field, wt, len, k, k + len);
      i = k + len;
    } else if (wt === 1 || wt === 5) {
      i = j + (wt === 1 ? 8 : 4);
      if (i > b.length) throw new Error('truncated field');
    } else {
      throw new Error('bad wire type');
    }
  }
}

function decodeRequest(buf) {
  const req = { responseSize: 0, body: null };
  fields(buf, (f, wt, v, s, e) => {
    if (f === 2 && wt === 0) req.responseSize = v;
    if (f === 3 && wt === 2) {
      fields(buf.subarray(s, e), (pf, pwt, pv, ps, pe) => {
        if (pf === 2 && pwt === 2) req.body = Buffer.from(buf.subarray(s + ps, s + pe));
      });
    }
  });
  return req;
}

function varint(v) {
  const out = [];
  while (v >= 0x80) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

function encodeResponse(resp) {
  if (!resp.body || resp.body.length === 0) return Buffer.alloc(0);
  const bodyHdr = [0x12, ...varint(resp.body.length)];
  const inner = bodyHdr.length + resp.body.length;
  const hdr = [0x0a, ...varint(inner), ...bodyHdr];
  const out = Buffer.allocUnsafe(hdr.length + resp.body.length);
  out.set(hdr, 0);
  resp.body.copy(out, hdr.length);
  return out;
}

const service = {
  UnaryCall: {
    path: '/grpc.testing.BenchmarkService/UnaryCall',
    requestStream: false,
    responseStream: false,
    requestSerialize: () => { throw new Error('server only'); },
    requestDeserialize: decodeRequest,
    responseSerialize: encodeResponse,
    responseDeserialize: () => { throw new Error('server only'); },
  },
};

function main() {
  const i = process.argv.indexOf('--port');
  const port = i > 0 ? Number(process.argv[i + 1]) : 0;
  const server = new grpc.Server();
  server.addService(service, {
    UnaryCall: (call, callback) => {
      callback(null, { body: Buffer.alloc(call.request.responseSize) });
    },
  });
  server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
    if (err) {
      console.error(err.message);
      process.exit(1);
    }
    process.stdout.write(`listening on 127.0.0.1:${bound}\n`);
  });
  process.on('SIGTERM', () => server.forceShutdown() || process.exit(0));
}

main();
