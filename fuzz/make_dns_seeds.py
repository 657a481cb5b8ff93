#!/usr/bin/python3
"""Writes the seed corpus of fuzz_peer_dns: DNS replies as servers send them (SRV with and
without glue, A, AAAA, CNAME chains, NXDOMAIN, the "." target) and a few broken ones
(a compression loop, a cut record). Run: fuzz/make_dns_seeds.py"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'corpus', 'fuzz_peer_dns')
A, CNAME, AAAA, SRV, OPT = 1, 5, 28, 33, 41


def name(n):
    if n in ('', '.'):
        return b'\0'
    return b''.join(bytes([len(l)]) + l.encode() for l in n.rstrip('.').split('.')) + b'\0'


def rr(owner, rtype, rdata, ttl=30):
    return owner + struct.pack('>HHIH', rtype, 1, ttl, len(rdata)) + rdata


def srv_data(prio, weight, port, target):
    return struct.pack('>HHH', prio, weight, port) + name(target)


def reply(qname, qtype, answers=(), additional=(), rcode=0, authority=()):
    hdr = struct.pack('>HHHHHH', 0x4242, 0x8180 | rcode, 1, len(answers), len(authority),
                      len(additional))
    return (hdr + name(qname) + struct.pack('>HH', qtype, 1) + b''.join(answers)
            + b''.join(authority) + b''.join(additional))


def seeds():
    q = '_grpc._tcp.svc.mesh.test'
    targets = [('n1.mesh.test', 7001, '10.1.0.1', None), ('n2.mesh.test', 7002, '10.1.0.2',
                                                           'fd00::2')]
    ans = [rr(b'\xc0\x0c', SRV, srv_data(0, 10, p, t)) for t, p, _, _ in targets]
    glue = []
    for t, _, v4, v6 in targets:
        glue.append(rr(name(t), A, bytes(map(int, v4.split('.')))))
        if v6:
            glue.append(rr(name(t), AAAA, bytes(15) + b'\x02'))
    yield 'srv_glue', reply(q, SRV, ans, glue)
    yield 'srv_no_glue', reply(q, SRV, ans)
    yield 'srv_priorities', reply(q, SRV, ans + [rr(b'\xc0\x0c', SRV, srv_data(1, 0, 7003,
                                                                               'n3.mesh.test'))])
    yield 'srv_dot', reply(q, SRV, [rr(b'\xc0\x0c', SRV, srv_data(0, 0, 0, '.'))])
    yield 'srv_edns', reply(q, SRV, ans, glue + [b'\0' + struct.pack('>HHIH', OPT, 1232, 0, 0)])
    yield 'nxdomain', reply(q, SRV, rcode=3)
    yield 'a_two', reply('plain.mesh.test', A, [rr(b'\xc0\x0c', A, bytes([10, 2, 0, i]))
                                                 for i in (1, 2, 1)])
    yield 'aaaa_one', reply('plain.mesh.test', AAAA, [rr(b'\xc0\x0c', AAAA, bytes(15) + b'\x09')])
    yield 'a_cname', reply('alias.mesh.test', A, [rr(b'\xc0\x0c', CNAME, name('real.mesh.test')),
                                                  rr(name('real.mesh.test'), A, bytes([10, 3, 0,
                                                                                        1]))])
    yield 'a_nodata', reply('plain.mesh.test', AAAA)
    # A name whose compression pointer points at itself, and a record cut short.
    yield 'loop', reply(q, SRV, [rr(b'\xc0\x1e', SRV, srv_data(0, 0, 1, 'x'))])
    yield 'cut', reply(q, SRV, ans, glue)[:-7]


def main():
    os.makedirs(OUT, exist_ok=True)
    for n, data in seeds():
        with open(os.path.join(OUT, n), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    main()
