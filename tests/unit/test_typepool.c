/* The type pool: the compiled-in API, files built at run time, name resolution as protoc
 * does it, the checks that refuse bad files (atomically), namespaces, new versions of a
 * file, path resolution and concurrent readers. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "descbuild.h"
#include "store/typepool.h"

extern const uint8_t api_descriptor_set[];
extern const size_t api_descriptor_set_len;

enum {
	T_DOUBLE = 1,
	T_INT64 = 3,
	T_INT32 = 5,
	T_BOOL = 8,
	T_STRING = 9,
	T_MESSAGE = 11,
	T_BYTES = 12,
	T_ENUM = 14
};

static tp_pool *builtin_pool(void)
{
	tp_pool *tp = tp_new();
	assert_non_null(tp);
	int rc = tp_add_set(tp, NULL, api_descriptor_set, api_descriptor_set_len);
	if (rc)
		fail_msg("builtin set: %s", store_err_msg());
	return tp;
}

static const tp_field *field(const tp_message *m, const char *name)
{
	const tp_field *f = tp_message_field_by_name(m, name, strlen(name));
	if (!f)
		fail_msg("no field %s in %s", name, tp_message_get(m)->full_name);
	return f;
}

/* Adds f and expects failure with an error message containing `want`. */
static void add_fails(tp_pool *tp, const char *ns, db_file *f, const char *want)
{
	int rc = tp_add_file(tp, ns, f);
	assert_int_equal(rc, -EINVAL);
	if (!strstr(store_err_msg(), want))
		fail_msg("error \"%s\" does not mention \"%s\"", store_err_msg(), want);
}

static void add_ok(tp_pool *tp, const char *ns, db_file *f)
{
	int rc = tp_add_file(tp, ns, f);
	if (rc)
		fail_msg("add %s: %s", f->name, store_err_msg());
}

static void test_builtin(void **state)
{
	(void)state;
	tp_pool *tp = builtin_pool();
	const tp_message *coll = tp_find_message(tp, NULL, "collector.Collection");
	assert_non_null(coll);
	assert_ptr_equal(tp_find_message(tp, NULL, ".collector.Collection"), coll);
	assert_ptr_equal(tp_find_message(tp, "any-ns", "collector.Collection"), coll);
	const tp_message_info *ci = tp_message_get(coll);
	assert_string_equal(ci->full_name, "collector.Collection");
	assert_string_equal(ci->name, "Collection");
	assert_string_equal(ci->file, "collector/collection.proto");
	assert_int_equal(ci->wkt, TP_WKT_NONE);
	for (size_t i = 1; i < ci->n_fields; i++)
		assert_true(ci->fields[i - 1].number < ci->fields[i].number);

	const tp_field *f = field(coll, "indexed_fields");
	assert_string_equal(f->json_name, "indexedFields");
	assert_int_equal(f->number, 4);
	assert_int_equal(f->type, TP_STRING);
	assert_true(f->repeated);
	assert_false(f->packed);
	assert_false(f->has_presence);
	assert_ptr_equal(tp_message_field_by_number(coll, 4), f);
	assert_ptr_equal(tp_message_field_by_any_name(coll, "indexedFields", 13), f);
	assert_ptr_equal(tp_message_field_by_any_name(coll, "indexed_fields", 14), f);
	assert_null(tp_message_field_by_name(coll, "indexedFields", 13));
	assert_null(tp_message_field_by_name(coll, "indexed_field", 13));
	assert_null(tp_message_field_by_number(coll, 99));

	f = field(coll, "message_type");
	assert_int_equal(f->type, TP_MESSAGE);
	assert_true(f->has_presence);
	assert_ptr_equal(f->message, tp_find_message(tp, NULL, "collector.MessageTypeRef"));
	assert_ptr_equal(f->parent, coll);

	const tp_message *md = tp_find_message(tp, NULL, "collector.Metadata");
	f = field(md, "labels");
	assert_true(f->is_map);
	assert_true(tp_message_get(f->message)->map_entry);
	f = field(md, "created_at");
	assert_int_equal(tp_message_get(f->message)->wkt, TP_WKT_TIMESTAMP);

	const tp_message *data = tp_find_message(tp, NULL, "collector.CollectionData");
	assert_int_equal(tp_message_get(data)->n_oneofs, 1);
	assert_string_equal(tp_message_get(data)->oneofs[0].name, "content");
	assert_int_equal(field(data, "data")->oneof, 0);
	assert_int_equal(field(data, "uri")->oneof, 0);
	assert_int_equal(field(data, "name")->oneof, -1);
	assert_true(field(data, "uri")->has_presence);

	/* Enums: by number (first declared name), by name. */
	const tp_enum *code = tp_find_enum(tp, NULL, "collector.Status.Code");
	assert_non_null(code);
	assert_string_equal(tp_enum_name_of(code, 5), "ALREADY_EXISTS");
	assert_null(tp_enum_name_of(code, 99));
	int32_t n = -1;
	assert_true(tp_enum_number_of(code, "NOT_FOUND", 9, &n));
	assert_int_equal(n, 4);
	assert_false(tp_enum_number_of(code, "NOT_FOUN", 8, &n));
	assert_false(tp_enum_get(code)->closed);
	assert_true(tp_enum_get(tp_find_enum(tp, NULL, "google.protobuf.NullValue"))->null_value);
	assert_null(tp_find_enum(tp, NULL, "collector.Collection"));
	assert_null(tp_find_message(tp, NULL, "collector.Status.Code"));

	/* Well-known types are recognized. */
	static const struct {
		const char *name;
		tp_wkt wkt;
	} wkts[] = {
		{"google.protobuf.Any", TP_WKT_ANY},
		{"google.protobuf.Duration", TP_WKT_DURATION},
		{"google.protobuf.FieldMask", TP_WKT_FIELD_MASK},
		{"google.protobuf.Struct", TP_WKT_STRUCT},
		{"google.protobuf.Value", TP_WKT_VALUE},
		{"google.protobuf.ListValue", TP_WKT_LIST_VALUE},
		{"google.protobuf.BytesValue", TP_WKT_WRAPPER},
		{"google.protobuf.UInt64Value", TP_WKT_WRAPPER},
		{"google.protobuf.Empty", TP_WKT_NONE},
	};
	for (size_t i = 0; i < sizeof wkts / sizeof *wkts; i++) {
		const tp_message *w = tp_find_message(tp, NULL, wkts[i].name);
		assert_non_null(w);
		assert_int_equal(tp_message_get(w)->wkt, wkts[i].wkt);
	}
	assert_ptr_equal(tp_find_type_url(tp, NULL, "type.googleapis.com/collector.Status", 36),
			 tp_find_message(tp, NULL, "collector.Status"));
	assert_null(tp_find_type_url(tp, NULL, "type.googleapis.com/", 20));

	/* Services, with their methods' types resolved. */
	const tp_service *svc = tp_find_service(tp, NULL, "collector.CollectionService");
	assert_non_null(svc);
	const tp_service_info *si = tp_service_get(svc);
	assert_true(si->n_methods >= 11);
	assert_string_equal(si->methods[0].name, "Create");
	assert_ptr_equal(si->methods[0].input,
			 tp_find_message(tp, NULL, "collector.CreateRequest"));

	/* Adding the same set again changes nothing. */
	assert_int_equal(tp_add_set(tp, NULL, api_descriptor_set, api_descriptor_set_len), 0);
	assert_ptr_equal(tp_find_message(tp, NULL, "collector.Collection"), coll);
	assert_int_equal(tp_add_set(tp, NULL, (const uint8_t *)"\xff", 1), -EINVAL);
	tp_free(tp);
}

/* package zoo: nested types, relative and qualified names, shadowing, imports. */
static db_file *zoo_file(void)
{
	db_file *f = db_file_new("zoo/animal.proto", "zoo", "proto3");
	db_import(f, "google/protobuf/timestamp.proto");
	db_enum *kind = db_enum_add(f, NULL, "Kind");
	db_value(kind, "KIND_UNSPECIFIED", 0);
	db_value(kind, "CAT", 1);
	db_msg *b = db_message(f, "B");
	db_field_add(b, "x", 1, 1, T_INT32, NULL);
	db_msg *a = db_message(f, "Animal");
	db_msg *owner = db_nested(a, "Owner");
	db_field_add(owner, "pet", 1, 1, T_MESSAGE, "Animal"); /* outward to zoo.Animal */
	db_msg *ab = db_nested(a, "B");			       /* shadows zoo.B inside Animal */
	db_field_add(ab, "y", 1, 1, T_STRING, NULL);
	db_field_add(a, "kind", 1, 1, 0, "Kind"); /* type left for the name to decide */
	db_field_add(a, "owner", 2, 1, T_MESSAGE, "Owner");
	db_field_add(a, "parent", 3, 1, T_MESSAGE, ".zoo.Animal");
	db_field_add(a, "b", 4, 1, T_MESSAGE, "B");
	db_field_add(a, "born", 5, 1, T_MESSAGE, "google.protobuf.Timestamp");
	db_field_add(a, "outer_b", 6, 1, T_MESSAGE, "zoo.B");
	db_msg *keeper = db_message(f, "Keeper");
	db_field_add(keeper, "owner", 1, 1, T_MESSAGE, "Animal.Owner");
	db_field_add(keeper, "b", 2, 1, T_MESSAGE, "B");
	db_field_add(keeper, "kinds", 3, 3, T_ENUM, ".zoo.Kind");
	db_field_add(keeper, "id", 4, 1, T_STRING, NULL)->json_name = db_str("keeperId");
	return f;
}

static void test_resolution(void **state)
{
	(void)state;
	tp_pool *tp = builtin_pool();
	add_ok(tp, "zoo", zoo_file());
	const tp_message *a = tp_find_message(tp, "zoo", "zoo.Animal");
	const tp_message *owner = tp_find_message(tp, "zoo", "zoo.Animal.Owner");
	const tp_message *b = tp_find_message(tp, "zoo", "zoo.B");
	const tp_message *ab = tp_find_message(tp, "zoo", "zoo.Animal.B");
	const tp_message *keeper = tp_find_message(tp, "zoo", "zoo.Keeper");
	assert_non_null(a);
	assert_non_null(owner);
	assert_non_null(b);
	assert_non_null(ab);
	assert_ptr_not_equal(b, ab);
	assert_int_equal(field(a, "kind")->type, TP_ENUM);
	assert_ptr_equal(field(a, "kind")->enum_type, tp_find_enum(tp, "zoo", "zoo.Kind"));
	assert_ptr_equal(field(a, "owner")->message, owner);
	assert_ptr_equal(field(a, "parent")->message, a);
	assert_ptr_equal(field(a, "b")->message, ab);
	assert_ptr_equal(field(a, "outer_b")->message, b);
	assert_ptr_equal(field(a, "born")->message,
			 tp_find_message(tp, NULL, "google.protobuf.Timestamp"));
	assert_ptr_equal(field(owner, "pet")->message, a);
	assert_ptr_equal(field(keeper, "owner")->message, owner);
	assert_ptr_equal(field(keeper, "b")->message, b);
	const tp_field *kinds = field(keeper, "kinds");
	assert_true(kinds->packed); /* proto3 repeated scalars are packed */
	assert_false(kinds->closed_enum);
	assert_string_equal(field(keeper, "id")->json_name, "keeperId");
	assert_ptr_equal(tp_message_field_by_any_name(keeper, "keeperId", 8), field(keeper, "id"));
	/* Namespaces: zoo's types are not global, nor seen from another namespace. */
	assert_null(tp_find_message(tp, NULL, "zoo.Animal"));
	assert_null(tp_find_message(tp, "farm", "zoo.Animal"));
	tp_free(tp);
	db_free();
}

static void test_refusals(void **state)
{
	(void)state;
	tp_pool *tp = builtin_pool();
	db_file *f;
	db_msg *m;

	f = db_file_new("bad/a.proto", "bad", "proto3");
	m = db_message(f, "M");
	db_field_add(m, "ok", 1, 1, T_INT32, NULL);
	db_field_add(m, "other", 2, 1, T_MESSAGE, "Missing");
	add_fails(tp, "ns", f, "bad.M.other");
	add_fails(tp, "ns", f, "\"Missing\" not found");
	assert_null(tp_find_message(tp, "ns", "bad.M")); /* nothing was added */

	/* A compound name whose first part is found must be found whole there. */
	f = db_file_new("bad/b.proto", "bad", "proto3");
	m = db_message(f, "M");
	db_nested(m, "Inner");
	db_field_add(m, "x", 1, 1, T_MESSAGE, "M.Nope");
	add_fails(tp, "ns", f, "M.Nope");

	f = db_file_new("bad/c.proto", "bad", "proto3");
	db_message(f, "Dup");
	db_message(f, "Dup");
	add_fails(tp, "ns", f, "bad.Dup\" is already defined");

	f = db_file_new("bad/d.proto", "bad", "proto3");
	m = db_message(f, "M");
	db_field_add(m, "x", 1, 1, T_INT32, NULL);
	db_nested(m, "x");
	add_fails(tp, "ns", f, "bad.M.x");

	static const int bad_numbers[] = {0, -1, 19000, 19999, 536870912};
	for (size_t i = 0; i < sizeof bad_numbers / sizeof *bad_numbers; i++) {
		f = db_file_new("bad/e.proto", "bad", "proto3");
		m = db_message(f, "M");
		db_field_add(m, "n", bad_numbers[i], 1, T_INT32, NULL);
		add_fails(tp, "ns", f, "bad.M.n has invalid number");
	}
	f = db_file_new("bad/e.proto", "bad", "proto3");
	m = db_message(f, "M");
	db_field_add(m, "a", 7, 1, T_INT32, NULL);
	db_field_add(m, "b", 7, 1, T_INT32, NULL);
	add_fails(tp, "ns", f, "share number 7");

	f = db_file_new("bad/f.proto", "bad", "proto3");
	m = db_message(f, "M");
	db_field_add(m, "1abc", 1, 1, T_INT32, NULL);
	add_fails(tp, "ns", f, "invalid field name");
	f = db_file_new("bad/f.proto", "bad", "proto3");
	db_message(f, "a-b");
	add_fails(tp, "ns", f, "invalid message name");
	f = db_file_new("bad/f.proto", "bad..pkg", "proto3");
	add_fails(tp, "ns", f, "invalid package");
	f = db_file_new("bad/f.proto", "bad", "proto4");
	add_fails(tp, "ns", f, "unsupported syntax");

	f = db_file_new("bad/g.proto", "bad", "proto3");
	db_import(f, "not/there.proto");
	add_fails(tp, "ns", f, "imports not/there.proto");

	/* foo_bar and fooBar both have the JSON name fooBar. */
	f = db_file_new("bad/h.proto", "bad", "proto3");
	m = db_message(f, "M");
	db_field_add(m, "foo_bar", 1, 1, T_INT32, NULL);
	db_field_add(m, "fooBar", 2, 1, T_INT32, NULL);
	add_fails(tp, "ns", f, "JSON name");

	f = db_file_new("bad/i.proto", "bad", "proto3");
	m = db_message(f, "M");
	db_field_add(m, "e", 1, 1, T_ENUM, "M"); /* a message named as an enum */
	add_fails(tp, "ns", f, "is not an enum");

	f = db_file_new("bad/j.proto", "bad", "proto3");
	m = db_message(f, "M");
	db_field_add(m, "r", 1, 2, T_INT32, NULL);
	add_fails(tp, "ns", f, "cannot be required");

	/* A map entry must look like one. */
	f = db_file_new("bad/k.proto", "bad", "proto3");
	m = db_message(f, "M");
	db_map(m, "things", 1, T_DOUBLE, T_INT32, NULL);
	add_fails(tp, "ns", f, "not a valid map entry");

	f = db_file_new("bad/l.proto", "bad", "proto3");
	db_enum *e = db_enum_add(f, NULL, "E");
	db_value(e, "E_ONE", 1);
	add_fails(tp, "ns", f, "must be zero");

	/* Two enums of one package may not share a value name (values are siblings). */
	f = db_file_new("bad/m.proto", "bad", "proto3");
	db_value(db_enum_add(f, NULL, "E1"), "UNKNOWN", 0);
	db_value(db_enum_add(f, NULL, "E2"), "UNKNOWN", 0);
	add_fails(tp, "ns", f, "bad.UNKNOWN");

	/* A namespace cannot redefine what the global namespace has. */
	f = db_file_new("mine/ts.proto", "google.protobuf", "proto3");
	db_message(f, "Timestamp");
	add_fails(tp, "ns", f, "google.protobuf.Timestamp\" is already defined");

	/* Nothing of all that is visible. */
	assert_null(tp_find_message(tp, "ns", "bad.M"));
	assert_null(tp_find_message(tp, "ns", "bad.Dup"));
	assert_int_equal(tp_add_file(tp, "", zoo_file()), -EINVAL);
	tp_free(tp);
	db_free();
}

static void test_namespaces(void **state)
{
	(void)state;
	tp_pool *tp = builtin_pool();
	add_ok(tp, "a", zoo_file());
	add_ok(tp, "b", zoo_file()); /* another namespace: its own copy */
	const tp_message *za = tp_find_message(tp, "a", "zoo.Animal");
	const tp_message *zb = tp_find_message(tp, "b", "zoo.Animal");
	assert_non_null(za);
	assert_non_null(zb);
	assert_ptr_not_equal(za, zb);
	add_ok(tp, "a", zoo_file()); /* the same file again: nothing happens */
	assert_ptr_equal(tp_find_message(tp, "a", "zoo.Animal"), za);

	/* A global file may not define what a namespace already has. */
	db_file *g = db_file_new("g/zoo.proto", "zoo", "proto3");
	db_message(g, "Animal");
	add_fails(tp, NULL, g, "zoo.Animal\" is already defined");
	assert_null(tp_find_message(tp, NULL, "zoo.Animal"));

	/* A namespace that brings its own copy of a global import keeps the global one. */
	db_file *ts = db_file_new("google/protobuf/timestamp.proto", "google.protobuf", "proto3");
	db_message(ts, "Timestamp");
	add_ok(tp, "c", ts);
	assert_ptr_equal(tp_find_message(tp, "c", "google.protobuf.Timestamp"),
			 tp_find_message(tp, NULL, "google.protobuf.Timestamp"));

	/* A set is all or nothing: the second file fails, so the first is not added either. */
	db_file *ok = db_file_new("set/ok.proto", "set", "proto3");
	db_message(ok, "Fine");
	db_file *bad = db_file_new("set/bad.proto", "set", "proto3");
	db_import(bad, "set/ok.proto");
	db_field_add(db_message(bad, "Broken"), "x", 1, 1, T_MESSAGE, "Fine.Missing");
	Google__Protobuf__FileDescriptorSet set = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
	db_file *files[] = {ok, bad};
	set.n_file = 2;
	set.file = files;
	uint8_t buf[4096];
	size_t len = google__protobuf__file_descriptor_set__pack(&set, buf);
	assert_int_equal(tp_add_set(tp, "d", buf, len), -EINVAL);
	assert_non_null(strstr(store_err_msg(), "set.Broken.x"));
	assert_null(tp_find_message(tp, "d", "set.Fine"));
	/* Without the bad file, the set goes in, imports resolved within it. */
	set.n_file = 1;
	len = google__protobuf__file_descriptor_set__pack(&set, buf);
	assert_int_equal(tp_add_set(tp, "d", buf, len), 0);
	assert_non_null(tp_find_message(tp, "d", "set.Fine"));
	tp_free(tp);
	db_free();
}

/* v1 and v2 of one file: v2 takes the names, v1's objects stay readable. */
static void test_new_version(void **state)
{
	(void)state;
	tp_pool *tp = builtin_pool();
	db_file *v1 = db_file_new("pets.proto", "pets", "proto3");
	db_msg *m = db_message(v1, "Pet");
	db_field_add(m, "name", 1, 1, T_STRING, NULL);
	add_ok(tp, "ns", v1);
	const tp_message *p1 = tp_find_message(tp, "ns", "pets.Pet");
	assert_non_null(p1);

	db_file *user = db_file_new("user.proto", "pets", "proto3");
	db_import(user, "pets.proto");
	db_field_add(db_message(user, "Owner"), "pet", 1, 1, T_MESSAGE, "Pet");
	add_ok(tp, "ns", user);

	db_file *v2 = db_file_new("pets.proto", "pets", "proto3");
	m = db_message(v2, "Pet");
	db_field_add(m, "name", 1, 1, T_STRING, NULL);
	db_field_add(m, "age", 2, 1, T_INT32, NULL);
	add_ok(tp, "ns", v2);
	const tp_message *p2 = tp_find_message(tp, "ns", "pets.Pet");
	assert_non_null(p2);
	assert_ptr_not_equal(p1, p2);
	assert_int_equal(tp_message_get(p2)->n_fields, 2);
	assert_int_equal(tp_message_get(p1)->n_fields, 1);
	assert_string_equal(tp_message_get(p1)->fields[0].name, "name");
	const tp_message *owner = tp_find_message(tp, "ns", "pets.Owner");
	assert_ptr_equal(field(owner, "pet")->message, p1); /* resolved before v2 */

	/* A version that fails leaves the current one in place. */
	db_file *v3 = db_file_new("pets.proto", "pets", "proto3");
	db_field_add(db_message(v3, "Pet"), "x", 1, 1, T_MESSAGE, "Nope");
	add_fails(tp, "ns", v3, "Nope");
	assert_ptr_equal(tp_find_message(tp, "ns", "pets.Pet"), p2);
	/* v2's names do not clash with v1's leftovers when v2 is added again. */
	add_ok(tp, "ns", v2);
	assert_ptr_equal(tp_find_message(tp, "ns", "pets.Pet"), p2);
	tp_free(tp);
	db_free();
}

/* A removed file leaves the lookups (its symbols, its bytes, its packages when no other
 * file is in them); its objects stay readable; the same names can come back in another
 * shape. */
static void test_remove_file(void **state)
{
	(void)state;
	tp_pool *tp = builtin_pool();
	db_file *v1 = db_file_new("pets/pets.proto", "pets.home", "proto3");
	db_field_add(db_message(v1, "Pet"), "name", 1, 1, T_STRING, NULL);
	db_value(db_enum_add(v1, NULL, "Kind"), "KIND_UNKNOWN", 0);
	add_ok(tp, "ns", v1);
	db_file *other = db_file_new("pets/toys.proto", "pets.toys", "proto3");
	db_message(other, "Toy");
	add_ok(tp, "ns", other);
	const tp_message *pet = tp_find_message(tp, "ns", "pets.home.Pet");
	assert_non_null(pet);

	assert_int_equal(tp_remove_file(tp, "ns", "pets/pets.proto"), 0);
	assert_null(tp_find_message(tp, "ns", "pets.home.Pet"));
	assert_null(tp_find_enum(tp, "ns", "pets.home.Kind"));
	assert_null(tp_symbol_file(tp, "ns", "pets.home.Pet.name"));
	const uint8_t *bytes;
	size_t len;
	assert_false(tp_file_bytes(tp, "ns", "pets/pets.proto", &bytes, &len));
	assert_string_equal(tp_message_get(pet)->fields[0].name, "name");
	assert_int_equal(tp_remove_file(tp, "ns", "pets/pets.proto"), -ENOENT);
	/* The other file and its package stay. */
	assert_non_null(tp_find_message(tp, "ns", "pets.toys.Toy"));

	/* pets.home went with the file: a message may now take that name; pets is still the
	 * other file's package. */
	db_file *taker = db_file_new("taker.proto", "pets", "proto3");
	db_message(taker, "home");
	add_ok(tp, "ns", taker);
	db_file *clash = db_file_new("clash.proto", "", "proto3");
	db_message(clash, "pets");
	add_fails(tp, "ns", clash, "\"pets\" is already defined");

	/* The file again, with field 1 meaning something else: the pool keeps no history. */
	db_file *v2 = db_file_new("pets/pets.proto", "pets.house", "proto3");
	db_field_add(db_message(v2, "Pet"), "age", 1, 1, T_INT32, NULL);
	add_ok(tp, "ns", v2);
	const tp_message *again = tp_find_message(tp, "ns", "pets.house.Pet");
	assert_non_null(again);
	assert_string_equal(tp_message_get(again)->fields[0].name, "age");

	/* Only a namespace's own files go: not global ones, not in unknown namespaces. */
	assert_int_equal(tp_remove_file(tp, "ns", "google/protobuf/timestamp.proto"), -ENOENT);
	assert_int_equal(tp_remove_file(tp, "nowhere", "pets/pets.proto"), -ENOENT);
	assert_non_null(tp_find_message(tp, "ns", "google.protobuf.Timestamp"));
	tp_free(tp);
	db_free();
}

/* protoc refuses a file that imports itself; so does the pool, and changes nothing. */
static void test_self_import(void **state)
{
	(void)state;
	tp_pool *tp = builtin_pool();
	db_file *f = db_file_new("me.proto", "me", "proto3");
	db_import(f, "google/protobuf/timestamp.proto");
	db_import(f, "me.proto");
	db_message(f, "Me");
	add_fails(tp, "ns", f, "me.proto imports itself");
	assert_null(tp_find_message(tp, "ns", "me.Me"));
	tp_free(tp);
	db_free();
}

static void test_field_kinds(void **state)
{
	(void)state;
	tp_pool *tp = builtin_pool();
	db_file *f = db_file_new("kinds.proto", "k", "proto3");
	db_msg *m = db_message(f, "M");
	db_field_add(m, "opt", 1, 1, T_INT32, NULL);
	db_in_oneof(m->field[0], db_oneof(m, "_opt"));
	m->field[0]->has_proto3_optional = 1;
	m->field[0]->proto3_optional = 1;
	db_field_add(m, "plain", 2, 1, T_INT32, NULL);
	db_packed(db_field_add(m, "unpacked", 3, 3, T_INT32, NULL), 0);
	db_field_add(m, "strs", 4, 3, T_STRING, NULL);
	db_map(m, "counts", 5, T_STRING, T_INT64, NULL);
	int o = db_oneof(m, "choice");
	db_in_oneof(db_field_add(m, "c1", 6, 1, T_INT32, NULL), o);
	db_in_oneof(db_field_add(m, "c2", 7, 1, T_STRING, NULL), o);
	db_field_add(m, "sub", 8, 1, T_MESSAGE, "M");
	add_ok(tp, "ns", f);
	const tp_message *km = tp_find_message(tp, "ns", "k.M");
	const tp_field *opt = field(km, "opt");
	assert_true(opt->proto3_optional);
	assert_true(opt->has_presence);
	assert_true(tp_message_get(km)->oneofs[opt->oneof].synthetic);
	assert_false(field(km, "plain")->has_presence);
	assert_false(field(km, "unpacked")->packed);
	assert_false(field(km, "strs")->packed);
	assert_true(field(km, "counts")->is_map);
	assert_true(field(km, "c2")->has_presence);
	assert_false(tp_message_get(km)->oneofs[field(km, "c1")->oneof].synthetic);

	db_file *p2 = db_file_new("legacy.proto", "leg", "proto2");
	db_enum *e = db_enum_add(p2, NULL, "E");
	db_value(e, "FIVE", 5);
	db_value(e, "ALIAS", 5);
	db_value(e, "ONE", 1);
	db_msg *lm = db_message(p2, "L");
	db_field_add(lm, "i", 1, 1, T_INT32, NULL);
	db_field_add(lm, "r", 2, 3, T_INT32, NULL);
	db_packed(db_field_add(lm, "rp", 3, 3, T_INT32, NULL), 1);
	db_field_add(lm, "e", 4, 2, T_ENUM, "E");
	db_field_add(lm, "grp", 5, 1, 10, "L");
	add_ok(tp, "ns", p2);
	const tp_message *l = tp_find_message(tp, "ns", "leg.L");
	assert_true(field(l, "i")->has_presence);
	assert_false(field(l, "r")->packed);
	assert_true(field(l, "rp")->packed);
	assert_true(field(l, "e")->closed_enum);
	assert_int_equal(field(l, "grp")->type, TP_GROUP);
	const tp_enum *le = tp_find_enum(tp, "ns", "leg.E");
	assert_true(tp_enum_get(le)->closed);
	assert_string_equal(tp_enum_name_of(le, 5), "FIVE"); /* the first of the aliases */
	int32_t n;
	assert_true(tp_enum_number_of(le, "ALIAS", 5, &n));
	assert_int_equal(n, 5);
	tp_free(tp);
	db_free();
}

static void test_resolve_path(void **state)
{
	(void)state;
	tp_pool *tp = builtin_pool();
	const tp_message *coll = tp_find_message(tp, NULL, "collector.Collection");
	const char *p1[] = {"metadata", "created_at"};
	const tp_field *f = tp_resolve_path(coll, p1, 2);
	assert_non_null(f);
	assert_string_equal(f->name, "created_at");
	assert_int_equal(tp_message_get(f->message)->wkt, TP_WKT_TIMESTAMP);
	const char *p2[] = {"metadata", "labels", "any key"};
	f = tp_resolve_path(coll, p2, 3);
	assert_non_null(f);
	assert_string_equal(f->name, "value");
	assert_int_equal(f->type, TP_STRING);
	f = tp_resolve_path(coll, p2, 2);
	assert_non_null(f);
	assert_true(f->is_map);
	const char *p3[] = {"message_type", "message_name"};
	assert_int_equal(tp_resolve_path(coll, p3, 2)->type, TP_STRING);
	const char *bad1[] = {"nope"}, *bad2[] = {"name", "x"}, *bad3[] = {"indexed_fields", "x"},
		   *bad4[] = {"messageType"}, *bad5[] = {"metadata", "labels", "k", "deeper"};
	assert_null(tp_resolve_path(coll, bad1, 1));
	assert_null(tp_resolve_path(coll, bad2, 2));
	assert_null(tp_resolve_path(coll, bad3, 2));
	assert_null(tp_resolve_path(coll, bad4, 1));
	assert_null(tp_resolve_path(coll, bad5, 4));
	/* A map of messages: the key, then the value's fields. */
	const tp_message *dir = tp_find_message(tp, NULL, "collector.CollectionDir");
	const char *p4[] = {"subdirs", "docs", "files", "a.txt", "uri"};
	f = tp_resolve_path(dir, p4, 5);
	assert_non_null(f);
	assert_string_equal(f->name, "uri");
	tp_free(tp);
}

/* Readers look types up while a writer adds namespaces: found pointers never change. */
typedef struct reader_arg {
	tp_pool *tp;
	const tp_message *expect;
	atomic_int *stop;
	long lookups;
} reader_arg;

static void *reader(void *p)
{
	reader_arg *a = p;
	do {
		if (tp_find_message(a->tp, "ns7", "collector.Collection") != a->expect)
			return (void *)1;
		tp_find_message(a->tp, "ns3", "zoo.Animal");
		a->lookups++;
	} while (!atomic_load(a->stop));
	return NULL;
}

static void test_concurrent_readers(void **state)
{
	(void)state;
	tp_pool *tp = builtin_pool();
	atomic_int stop = 0;
	reader_arg args[3];
	pthread_t th[3];
	for (int i = 0; i < 3; i++) {
		args[i] = (reader_arg){tp, tp_find_message(tp, NULL, "collector.Collection"), &stop,
				       0};
		assert_int_equal(pthread_create(&th[i], NULL, reader, &args[i]), 0);
	}
	for (int i = 0; i < 40; i++) {
		char ns[16];
		snprintf(ns, sizeof ns, "ns%d", i);
		add_ok(tp, ns, zoo_file());
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 3; i++) {
		void *ret;
		pthread_join(th[i], &ret);
		assert_null(ret);
		assert_true(args[i].lookups > 0);
	}
	assert_non_null(tp_find_message(tp, "ns39", "zoo.Keeper"));
	tp_free(tp);
	db_free();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_builtin),	     cmocka_unit_test(test_resolution),
		cmocka_unit_test(test_refusals),     cmocka_unit_test(test_namespaces),
		cmocka_unit_test(test_new_version),  cmocka_unit_test(test_remove_file),
		cmocka_unit_test(test_self_import),  cmocka_unit_test(test_field_kinds),
		cmocka_unit_test(test_resolve_path), cmocka_unit_test(test_concurrent_readers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
