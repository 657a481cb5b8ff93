#!/usr/bin/python3
"""Writes the seed corpus of fuzz_workflow: workflow definitions (DAGs, cycles, references
in input_config, loop conditions) over the node's own methods. Needs the python stubs
(tests/gen_stubs.sh build/pygen). Run: fuzz/make_workflow_seeds.py"""
import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'build', 'pygen'))

from collector import common_pb2, worker_pb2  # noqa: E402

OUT = os.path.join(HERE, 'corpus', 'fuzz_workflow')
SVC = common_pb2.ServiceTypeRef(service_name='collector.CollectionService')


def task(id_, method='Get', deps=(), config=None, cont='', name=''):
    t = worker_pb2.Task(id=id_, service=SVC, method_name=method, dependencies=list(deps),
                        continuation_id=cont, name=name)
    if config is not None:
        t.input_config.update(config)
    return t


def seeds():
    yield worker_pb2.WorkflowDefinition(name='one', tasks=[task('a', config={'id': '$.input.id'})])
    yield worker_pb2.WorkflowDefinition(name='dag', tasks=[
        task('a', config={'namespace': 'fz', 'id': '$.input'}, name='\n\x02id'),
        task('b', deps=['a'], config={'id': '$.tasks.a.output.id', 'collection_name': 'c'}),
        task('c', deps=['a'], config={'id': {'operator': 'OP_GREATER_THAN', 'value': 3}}),
        task('d', deps=['b', 'c'], config={'id': '$.tasks.b.output.namespace',
                                            'x': ['$.tasks.c.output', 1, True, None]})])
    yield worker_pb2.WorkflowDefinition(name='cycle', tasks=[
        task('a', deps=['b']), task('b', deps=['a'])])
    yield worker_pb2.WorkflowDefinition(name='loop', tasks=[task('a', cont='loop', config={
        'id': {'operator': 'IN', 'value': ['a', 'b']}, 'namespace': {'operator': 'EXISTS'}})])
    yield worker_pb2.WorkflowDefinition(name='bad', tasks=[
        task('a', method='Nope'), task('a'), task('b', deps=['zz'], config={'id': '$.tasks.'})])


def main():
    os.makedirs(OUT, exist_ok=True)
    for d in seeds():
        b = d.SerializeToString()
        with open(os.path.join(OUT, hashlib.sha1(b).hexdigest()), 'wb') as f:
            f.write(b)


if __name__ == '__main__':
    main()
