/* gRPC server reflection, grpc.reflection.v1 and v1alpha (ServerReflectionInfo): lists the
 * node's services and serves the FileDescriptorProtos compiled into it, so that generic
 * clients (grpcurl, grpc_cli, Postman) can call it without .proto files. */
#ifndef SERVICES_REFLECTION_H
#define SERVICES_REFLECTION_H
#include <stddef.h>
#include <stdint.h>

#include "h2/method.h"

struct registry;

/* descriptor_set is a serialized google.protobuf.FileDescriptorSet holding every file with
 * its imports; it is parsed and indexed here (nothing of it is kept by reference). The
 * index lives as long as the process. t must outlive every call: list_services reads it at
 * request time, so services added after this one are listed too. Returns 0, -EINVAL for a
 * set that does not parse, -ENOMEM, or method_table_add's error.
 * With a registry (else NULL), list_services answers the services registered in the
 * caller's namespace, and the files registered there are served beside the compiled-in
 * ones. */
int reflection_register(method_table *t, const uint8_t *descriptor_set, size_t len,
			struct registry *reg);

#endif
