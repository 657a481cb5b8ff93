/* collector.CollectionService: the records of one collection. Its methods live by what they
 * do: writes in coll_write.c, reads in coll_read.c, queries in coll_search.c. */
#include "services/collection.h"

#include "collector/collection_server.pb-c.h"
#include "services/coll_read.h"
#include "services/coll_search.h"
#include "services/coll_write.h"

#define SVC "/collector.CollectionService/"

int collection_register(method_table *t, svc_env *env)
{
	/* clang-format would lay this macro's braced initializer out as a block. */
	/* clang-format off */
#define UNARY(name, lower, fn)                                                                     \
	{SVC name, METHOD_UNARY, &collector__##lower##_request__descriptor,                        \
	 &collector__##lower##_response__descriptor,                                               \
	 {.on_request = fn, .on_cancel = svc_job_on_cancel}, env}
	/* clang-format on */
	const method methods[] = {
		UNARY("Create", create, coll_write_create),
		UNARY("Get", get, coll_read_get),
		UNARY("Update", update, coll_write_update),
		UNARY("Delete", delete, coll_write_delete),
		UNARY("List", list, coll_search_list),
		UNARY("Search", search, coll_search_search),
		UNARY("Describe", describe, coll_read_describe),
		UNARY("Meta", meta, coll_read_meta),
		UNARY("Modify", modify, coll_read_modify),
		UNARY("Batch", batch, coll_write_batch),
	};
#undef UNARY
	return method_table_add_all(t, methods, sizeof(methods) / sizeof(methods[0]));
}
