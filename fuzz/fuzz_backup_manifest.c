/* A backup's manifest read back from disk (store/manifest.h): whatever the bytes, the parse
 * ends in bounded time and memory without a fault, and a manifest it accepts is written
 * back to JSON that parses again to the same manifest. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "base/buf.h"
#include "fuzz_check.h"
#include "store/manifest.h"

static void same(const manifest *a, const manifest *b)
{
	CHECK(!strcmp(a->backup_id, b->backup_id) && !strcmp(a->ns, b->ns) &&
	      !strcmp(a->name, b->name) && !strcmp(a->type_ns, b->type_ns));
	CHECK(a->timestamp_us == b->timestamp_us && a->records == b->records &&
	      a->db_size == b->db_size && a->include_files == b->include_files &&
	      a->file_count == b->file_count && a->file_bytes == b->file_bytes);
	CHECK(!memcmp(a->db_sha256, b->db_sha256, sizeof(a->db_sha256)));
	CHECK(a->nfiles == b->nfiles && a->ntype_files == b->ntype_files);
	for (size_t i = 0; i < a->nfiles; i++)
		CHECK(!strcmp(a->files[i].path, b->files[i].path) &&
		      a->files[i].size == b->files[i].size &&
		      !memcmp(a->files[i].sha256, b->files[i].sha256, SNAPSHOT_SHA256_LEN));
	CHECK(a->definition.len == b->definition.len &&
	      (!a->definition.len ||
	       !memcmp(a->definition.data, b->definition.data, a->definition.len)));
	for (size_t i = 0; i < a->ntype_files; i++)
		CHECK(a->type_files[i].len == b->type_files[i].len &&
		      (!a->type_files[i].len ||
		       !memcmp(a->type_files[i].data, b->type_files[i].data,
			       a->type_files[i].len)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	manifest m;
	if (manifest_parse((const char *)data, size, &m) == 0) {
		buf out = BUF_INIT;
		int rc = manifest_write(&m, &out);
		CHECK(rc == 0 || rc == -ENOMEM);
		if (rc == 0) {
			manifest again;
			CHECK(manifest_parse(out.text, out.len, &again) == 0);
			same(&m, &again);
			manifest_free(&again);
		}
		buf_free(&out);
	}
	manifest_free(&m);
	return 0;
}
