/* The base layer: the allocation hook and its failure injection, the arena, the byte
 * buffer, lists and container_of, base64, hex, UTF-8, JSON strings and mkdir -p. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/arena.h"
#include "base/base64.h"
#include "base/buf.h"
#include "base/bufpool.h"
#include "base/fs.h"
#include "base/hex.h"
#include "base/jsonstr.h"
#include "base/list.h"
#include "base/mem.h"
#include "base/utf8.h"

static void expect_buf(const buf *b, const char *want)
{
	assert_int_equal(b->len, strlen(want));
	if (b->len)
		assert_memory_equal(b->data, want, b->len);
}

/* ---- the allocation hook ---- */

static void test_mem_fail_nth(void **state)
{
	(void)state;
	mem_fail_arm(2, false);
	void *a = mem_alloc(8), *b = mem_calloc(1, 8), *c = mem_alloc(8);
	assert_non_null(a);
	assert_null(b);
	assert_non_null(c);
	assert_int_equal(mem_fail_count(), 1);
	assert_int_equal(mem_fail_disarm(), 3);
	mem_free(a);
	mem_free(c);
	/* Disarmed, nothing fails and nothing is counted. */
	assert_non_null(a = mem_alloc(8));
	assert_int_equal(mem_fail_count(), 1);
	mem_free(a);
}

static void test_mem_fail_persistent(void **state)
{
	(void)state;
	char *s = mem_strdup("kept");
	mem_fail_arm(1, true);
	/* A failed realloc leaves the block as it was, as realloc does. */
	assert_null(mem_realloc(s, 4096));
	assert_string_equal(s, "kept");
	char *t = s;
	assert_int_equal(mem_asprintf(&t, "%d", 1), -1);
	assert_null(t);
	assert_null(mem_strndup("abc", 2));
	assert_null(mem_aligned_alloc(64, 64));
	assert_int_equal(mem_fail_count(), 4);
	assert_int_equal(mem_fail_disarm(), 4);
	mem_free(s);
}

static void test_mem_strings(void **state)
{
	(void)state;
	char *s = mem_strndup("abcdef", 3), *t = NULL;
	assert_string_equal(s, "abc");
	mem_free(s);
	assert_int_equal(mem_asprintf(&t, "%s-%d", "x", 42), 4);
	assert_string_equal(t, "x-42");
	mem_free(t);
	void *p = mem_aligned_alloc(4096, 100);
	assert_true(((uintptr_t)p & 4095) == 0);
	mem_free(p);
}

/* ---- arena ---- */

static void test_arena_blocks(void **state)
{
	(void)state;
	arena a = {0};
	char *p[100];
	for (int i = 0; i < 100; i++) {
		p[i] = arena_alloc(&a, (size_t)i + 1);
		assert_non_null(p[i]);
		assert_true(((uintptr_t)p[i] & (alignof(max_align_t) - 1)) == 0);
		memset(p[i], i, (size_t)i + 1);
	}
	/* Blocks never move: what was written stays. */
	for (int i = 0; i < 100; i++)
		for (int k = 0; k <= i; k++)
			assert_int_equal((unsigned char)p[i][k], i);
	char *big = arena_alloc(&a, 10 * ARENA_BLOCK);
	assert_non_null(big);
	memset(big, 1, 10 * ARENA_BLOCK);
	unsigned char *z = arena_zalloc(&a, 100);
	for (int i = 0; i < 100; i++)
		assert_int_equal(z[i], 0);
	assert_string_equal(arena_strndup(&a, "hello", 4), "hell");
	arena_free(&a);
	assert_null(a.head);
}

static void test_arena_marks_and_caller_block(void **state)
{
	(void)state;
	_Alignas(max_align_t) unsigned char mem[512];
	arena a;
	arena_init_on(&a, mem, sizeof(mem), 1024);
	/* Within the caller's block nothing is allocated, so nothing can fail. */
	mem_fail_arm(1, true);
	void *small = arena_alloc(&a, 64);
	assert_true((unsigned char *)small >= mem && (unsigned char *)small < mem + sizeof(mem));
	assert_null(arena_alloc(&a, 4096));
	assert_int_equal(mem_fail_disarm(), 1);

	arena_mark m = arena_get_mark(&a);
	void *x = arena_alloc(&a, 64);
	assert_non_null(arena_alloc(&a, 4096)); /* a block of its own */
	assert_non_null(arena_alloc(&a, 900));	/* a block of next bytes */
	arena_release(&a, m);
	/* Back at the mark: the same memory again. */
	assert_ptr_equal(arena_alloc(&a, 64), x);
	assert_non_null(arena_alloc(&a, 2000));
	arena_free(&a);
	assert_ptr_equal(a.head, a.fixed);
	assert_ptr_equal(arena_alloc(&a, 64), small);
	arena_free(&a);
}

static void test_arena_sizes(void **state)
{
	(void)state;
	arena a = ARENA_INIT(128, 512);
	assert_non_null(arena_alloc(&a, 16));
	assert_non_null(arena_alloc(&a, 16));
	/* An absurd size fails instead of wrapping around. */
	assert_null(arena_alloc(&a, SIZE_MAX - 8));
	assert_null(arena_strndup(&a, "", SIZE_MAX));
	arena_free(&a);
}

/* ---- buf ---- */

static void test_buf_writes(void **state)
{
	(void)state;
	buf b = BUF_INIT;
	assert_int_equal(buf_append(&b, "ab", 2), 0);
	assert_int_equal(buf_putc(&b, 'c'), 0);
	assert_int_equal(buf_puts(&b, "def"), 0);
	assert_int_equal(buf_append(&b, NULL, 0), 0);
	expect_buf(&b, "abcdef");
	assert_int_equal(buf_terminate(&b), 0);
	assert_string_equal(b.text, "abcdef");
	buf_consume(&b, 2);
	expect_buf(&b, "cdef");
	buf_truncate(&b, 1);
	expect_buf(&b, "c");
	buf_consume(&b, 5);
	expect_buf(&b, "");
	for (int i = 0; i < 10000; i++)
		assert_int_equal(buf_putc(&b, (char)('a' + i % 26)), 0);
	assert_int_equal(b.len, 10000);
	assert_int_equal(b.text[9999], 'a' + 9999 % 26);
	buf_free(&b);
	assert_null(b.data);
}

static void test_buf_failure_is_sticky(void **state)
{
	(void)state;
	buf b = BUF_INIT;
	assert_int_equal(buf_puts(&b, "kept"), 0);
	size_t cap = b.cap;
	mem_fail_arm(1, false);
	assert_int_equal(buf_reserve(&b, cap * 4), -ENOMEM);
	assert_int_equal(mem_fail_disarm(), 1);
	assert_true(b.failed);
	expect_buf(&b, "kept");
	/* Memory is back, and there was room for these, yet the buffer takes nothing more. */
	assert_int_equal(buf_putc(&b, 'x'), -ENOMEM);
	assert_int_equal(buf_append(&b, "yz", 2), -ENOMEM);
	assert_int_equal(buf_terminate(&b), -ENOMEM);
	buf_consume(&b, 2);
	assert_int_equal(buf_putc(&b, 'x'), -ENOMEM);
	expect_buf(&b, "pt");
	/* An absurd size fails the same way. */
	buf c = BUF_INIT;
	assert_int_equal(buf_reserve(&c, SIZE_MAX - 1), -ENOMEM);
	assert_true(c.failed);
	buf_free(&c);
	/* Truncating clears the failure. */
	buf_truncate(&b, 1);
	assert_false(b.failed);
	assert_int_equal(buf_puts(&b, "ine"), 0);
	expect_buf(&b, "pine");
	buf_reset(&b);
	expect_buf(&b, "");
	buf_free(&b);
}

/* ---- bufpool ---- */

static void test_bufpool_classes(void **state)
{
	(void)state;
	assert_int_equal(bufpool_class_size(100), 100); /* not pooled */
	assert_int_equal(bufpool_class_size(4096), 4096);
	assert_int_equal(bufpool_class_size(4097), 5120);
	assert_int_equal(bufpool_class_size(8192), 8192);
	assert_int_equal(bufpool_class_size(16384 + 5), 20480);
	assert_int_equal(bufpool_class_size((1 << 20) + 5), (1 << 20) + (1 << 18));
	assert_int_equal(bufpool_class_size(BUFPOOL_MAX), BUFPOOL_MAX);
	assert_int_equal(bufpool_class_size(BUFPOOL_MAX + 1), BUFPOOL_MAX + 1);
}

static void test_bufpool_reuses_within_bounds(void **state)
{
	(void)state;
	bufpool_thread_release();
	size_t cap;
	uint8_t *p = bufpool_get(10000, &cap);
	assert_non_null(p);
	assert_int_equal(cap, 10240);
	memset(p, 7, cap);
	bufpool_put(p, cap);
	assert_int_equal(bufpool_thread_cached(), 10240);
	/* The same class gets the same block back; another class does not. */
	size_t cap2;
	uint8_t *q = bufpool_get(9000, &cap2);
	assert_ptr_equal(q, p);
	assert_int_equal(cap2, 10240);
	assert_int_equal(bufpool_thread_cached(), 0);
	/* A cached block still counts as an allocation for failure injection. */
	bufpool_put(q, cap2);
	mem_fail_arm(1, false);
	assert_null(bufpool_get(9000, &cap2));
	assert_int_equal(mem_fail_disarm(), 1);
	q = bufpool_get(9000, &cap2);
	assert_ptr_equal(q, p);
	bufpool_put(q, cap2);
	/* A size that is no class, and anything past the thread's bound, is freed. */
	bufpool_put(mem_alloc(5000), 5000);
	assert_int_equal(bufpool_thread_cached(), 10240);
	size_t big = (size_t)4 << 20;
	/* One class keeps at most half the thread's bound. */
	for (int i = 0; i < 5; i++)
		bufpool_put(mem_alloc(big), big);
	assert_int_equal(bufpool_thread_cached(), 10240 + BUFPOOL_THREAD_BYTES / 2);
	/* And the thread its bound, whatever the classes. */
	size_t other = (size_t)3 << 20;
	for (int i = 0; i < 5; i++)
		bufpool_put(mem_alloc(other), other);
	assert_true(bufpool_thread_cached() <= BUFPOOL_THREAD_BYTES);
	assert_true(bufpool_thread_cached() > BUFPOOL_THREAD_BYTES - other);
	bufpool_thread_release();
	assert_int_equal(bufpool_thread_cached(), 0);
}

/* A buffer that grows through the pool's classes keeps its bytes, and one freed leaves
 * its block for the next. */
static void test_buf_grows_through_pool(void **state)
{
	(void)state;
	bufpool_thread_release();
	buf b = BUF_INIT;
	for (int i = 0; i < 300000; i++)
		assert_int_equal(buf_putc(&b, (char)(i % 251)), 0);
	for (int i = 0; i < 300000; i++)
		assert_int_equal((uint8_t)b.data[i], i % 251);
	assert_int_equal(bufpool_class_size(b.cap), b.cap);
	size_t cap = b.cap;
	buf_free(&b);
	assert_int_equal(bufpool_thread_cached() >= cap, true);
	/* A first large reservation takes its class, not the next power of two. */
	assert_int_equal(buf_reserve(&b, 16384 + 5), 0);
	assert_int_equal(b.cap, 20480);
	buf_free(&b);
	bufpool_thread_release();
}

static void *put_and_exit(void *arg)
{
	(void)arg;
	size_t cap;
	void *p = bufpool_get(65536, &cap);
	bufpool_put(p, cap);
	return (void *)bufpool_thread_cached();
}

static void *limited_thread(void *arg)
{
	(void)arg;
	bufpool_thread_limit(65536);
	bufpool_put(mem_alloc(81920), 81920); /* past the thread's bound: freed */
	size_t after_big = bufpool_thread_cached();
	bufpool_put(mem_alloc(32768), 32768); /* a class takes half the bound */
	bufpool_put(mem_alloc(32768), 32768); /* and no more */
	return (void *)(after_big * 1000000 + bufpool_thread_cached());
}

static void test_bufpool_thread_limit(void **state)
{
	(void)state;
	pthread_t t;
	void *res = NULL;
	assert_int_equal(pthread_create(&t, NULL, limited_thread, NULL), 0);
	assert_int_equal(pthread_join(t, &res), 0);
	assert_int_equal((size_t)res, 32768);
}

/* A thread's cache is freed when it ends (LeakSanitizer fails this test otherwise). */
static void test_bufpool_thread_exit(void **state)
{
	(void)state;
	pthread_t t;
	void *cached = NULL;
	assert_int_equal(pthread_create(&t, NULL, put_and_exit, NULL), 0);
	assert_int_equal(pthread_join(t, &cached), 0);
	assert_int_equal((size_t)cached, 65536);
}

/* ---- lists ---- */

typedef struct item {
	int v;
	list_node link;
} item;

static void expect_list(list_node *l, const int *want, size_t n)
{
	size_t i = 0;
	list_each (it, l) {
		assert_true(i < n);
		assert_int_equal(container_of(it, item, link)->v, want[i++]);
	}
	assert_int_equal(i, n);
	/* And back, through prev. */
	for (list_node *it = l->prev; it != l; it = it->prev)
		assert_int_equal(container_of(it, item, link)->v, want[--i]);
}

static void test_list(void **state)
{
	(void)state;
	list_node l;
	list_init(&l);
	assert_true(list_empty(&l));
	item it[5];
	for (int i = 0; i < 5; i++)
		it[i].v = i;
	list_push_back(&l, &it[1].link);
	list_push_back(&l, &it[2].link);
	list_push_front(&l, &it[0].link);
	list_insert_after(&it[2].link, &it[4].link);
	list_insert_after(&it[2].link, &it[3].link);
	expect_list(&l, (const int[]){0, 1, 2, 3, 4}, 5);
	list_remove(&it[0].link);
	list_remove(&it[2].link);
	list_remove(&it[4].link);
	expect_list(&l, (const int[]){1, 3}, 2);
	/* A removed node is on no list: removing it again changes nothing. */
	list_remove(&it[2].link);
	expect_list(&l, (const int[]){1, 3}, 2);
	/* The safe walk may take out the node it is at. */
	list_push_back(&l, &it[4].link);
	list_each_safe (n, &l)
		if (container_of(n, item, link)->v != 3)
			list_remove(n);
	expect_list(&l, (const int[]){3}, 1);
	list_remove(&it[3].link);
	assert_true(list_empty(&l));
	/* container_of of a member that is not the first. */
	assert_ptr_equal(container_of(&it[3].link, item, link), &it[3]);
}

/* ---- base64 ---- */

static void test_base64_encode(void **state)
{
	(void)state;
	/* RFC 4648 section 10 vectors, plus the two characters past the letters and digits. */
	static const char *const vec[][2] = {
		{"", ""},
		{"f", "Zg=="},
		{"fo", "Zm8="},
		{"foo", "Zm9v"},
		{"foob", "Zm9vYg=="},
		{"fooba", "Zm9vYmE="},
		{"foobar", "Zm9vYmFy"},
		{"\xfb\xff", "+/8="},
	};
	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		buf b = {0};
		assert_int_equal(base64_put(&b, (const uint8_t *)vec[i][0], strlen(vec[i][0]), 0),
				 0);
		expect_buf(&b, vec[i][1]);
		buf_free(&b);
	}
}

static void test_base64_decode(void **state)
{
	(void)state;
	static const char *const vec[][2] = {
		{"", ""},
		{"Zg==", "f"},
		{"Zg", "f"},
		{"Zm8=", "fo"},
		{"Zm8", "fo"},
		{"Zm9v", "foo"},
		{"Zm9vYg==", "foob"},
		{"Zm9vYg", "foob"},
		{"Zm9vYmE=", "fooba"},
		{"Zm9vYmE", "fooba"},
		{"Zm9vYmFy", "foobar"},
		{"+/8=", "\xfb\xff"},
		{"+/8", "\xfb\xff"},
	};
	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		buf b = {0};
		assert_int_equal(base64_put_decoded(&b, vec[i][0], strlen(vec[i][0]), 0), 0);
		expect_buf(&b, vec[i][1]);
		buf_free(&b);
	}
}

static void test_base64_decode_invalid(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"Z",	    /* a lone sixth of a byte */
		"Zm9vY",    /* same after a full group */
		"Zg=",	    /* padding that does not complete the group */
		"Zg===",    /* too much padding */
		"Z===",	    /* three pad characters */
		"====",	    /* only padding */
		"=",	    /* only padding */
		"Zg==Zg==", /* padding in the middle */
		"Z=g=",	    /* padding in the middle of a group */
		"Zm9v!",    /* outside the alphabet */
		"Zm 9v",    /* whitespace */
		"Zm9v\n",   /* trailing newline */
		"-_8",	    /* the URL-safe alphabet is a different encoding */
		"Zm9\x80",  /* high byte */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		buf b = {0};
		assert_int_equal(buf_append(&b, "kept", 4), 0);
		int rc = base64_put_decoded(&b, bad[i], strlen(bad[i]), 0);
		if (rc != -EINVAL)
			fail_msg("\"%s\" decoded with rc %d", bad[i], rc);
		/* Nothing is appended on failure. */
		expect_buf(&b, "kept");
		buf_free(&b);
	}
	/* An embedded NUL is not base64 either. */
	buf b = {0};
	assert_int_equal(base64_put_decoded(&b, "Zm\0v", 4, 0), -EINVAL);
	/* Only len bytes are read: "Zm9vYg==" cut to 6 is unpadded "foob". */
	assert_int_equal(base64_put_decoded(&b, "Zm9vYg==", 6, 0), 0);
	expect_buf(&b, "foob");
	buf_free(&b);
}

static void test_base64_roundtrip(void **state)
{
	(void)state;
	uint8_t data[300];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 151 + 17);
	for (size_t n = 0; n <= sizeof(data); n++) {
		buf enc = {0}, dec = {0};
		assert_int_equal(base64_put(&enc, data, n, 0), 0);
		assert_int_equal(enc.len, (n + 2) / 3 * 4);
		assert_int_equal(base64_put_decoded(&dec, (const char *)enc.data, enc.len, 0), 0);
		assert_int_equal(dec.len, n);
		if (n)
			assert_memory_equal(dec.data, data, n);
		/* The same without padding, as some peers send it. */
		size_t unpadded = enc.len;
		while (unpadded && enc.data[unpadded - 1] == '=')
			unpadded--;
		buf_reset(&dec);
		assert_int_equal(base64_put_decoded(&dec, (const char *)enc.data, unpadded, 0), 0);
		assert_int_equal(dec.len, n);
		if (n)
			assert_memory_equal(dec.data, data, n);
		buf_free(&enc);
		buf_free(&dec);
	}
}

static void test_base64_variants(void **state)
{
	(void)state;
	const uint8_t data[] = {0xfb, 0xff, 0xbf};
	char out[8];
	/* The URL-safe alphabet, without padding: page tokens. */
	int url = BASE64_URL | BASE64_NOPAD;
	assert_int_equal(base64_encoded_len(2, url), 3);
	base64_encode(out, data, 2, url);
	assert_memory_equal(out, "-_8", 3);
	assert_int_equal(base64_encoded_len(3, url), 4);
	base64_encode(out, data, 3, url);
	assert_memory_equal(out, "-_-_", 4);
	uint8_t dec[8];
	assert_int_equal(base64_decode(dec, "-_8", 3, url), 2);
	assert_memory_equal(dec, data, 2);
	assert_int_equal(base64_decode(dec, "+/8", 3, url), -1);  /* the other alphabet */
	assert_int_equal(base64_decode(dec, "-_8=", 4, url), -1); /* padding refused */
	assert_int_equal(base64_decode(dec, "-_9", 3, url), 2);	  /* spare bits set */
	assert_int_equal(base64_decode(dec, "-_9", 3, url | BASE64_EXACT), -1);
	assert_int_equal(base64_decode(dec, "Zh", 2, BASE64_EXACT), -1);
	assert_int_equal(base64_decode(dec, "Zg", 2, BASE64_EXACT), 1);
	/* JSON's bytes: either alphabet, even mixed, padded or not. */
	assert_int_equal(base64_decode(dec, "+_8=", 4, BASE64_EITHER), 2);
	assert_memory_equal(dec, data, 2);
	assert_int_equal(base64_decode(dec, "-/8", 3, BASE64_EITHER), 2);
	assert_memory_equal(dec, data, 2);
	/* Standard: only + and /. */
	assert_int_equal(base64_decode(dec, "-_8", 3, 0), -1);
	/* Nothing into a buffer that has no memory yet (found by fuzz_metadata). */
	buf e = BUF_INIT;
	assert_int_equal(base64_put(&e, data, 0, 0), 0);
	assert_int_equal(base64_put_decoded(&e, "", 0, 0), 0);
	assert_int_equal(e.len, 0);
	assert_null(e.data);
	/* Encoding lengths for every remainder, padded and not. */
	for (size_t n = 0; n < 10; n++) {
		assert_int_equal(base64_encoded_len(n, 0), (n + 2) / 3 * 4);
		assert_int_equal(base64_encoded_len(n, BASE64_NOPAD), (n * 8 + 5) / 6);
	}
}

/* ---- hex, UTF-8, JSON strings ---- */

static void test_hex(void **state)
{
	(void)state;
	const uint8_t in[] = {0x00, 0x0f, 0xa5, 0xff};
	char out[9];
	hex_encode(out, in, sizeof(in));
	assert_string_equal(out, "000fa5ff");
	assert_int_equal(hex_upper(0xa), 'A');
	assert_int_equal(hex_lower(0x1a), 'a');
	const char *digits = "0123456789abcdefABCDEF";
	for (const char *p = digits; *p; p++)
		assert_int_equal(hex_value((unsigned char)*p),
				 p - digits < 16 ? p - digits : p - digits - 6);
	assert_int_equal(hex_value('g'), -1);
	assert_int_equal(hex_value('/'), -1);
	assert_int_equal(hex_value(0), -1);
}

static void test_utf8(void **state)
{
	(void)state;
	struct {
		const char *s;
		size_t n;
		bool ok;
	} cases[] = {
		{"", 0, true},
		{"plain ascii", 11, true},
		{"caf\xc3\xa9", 5, true},
		{"\xe2\x98\xba", 3, true},
		{"\xf0\x9f\x98\x88", 4, true},
		{"a\0b", 3, false},		/* NUL */
		{"\xc3", 1, false},		/* truncated */
		{"\xc0\xaf", 2, false},		/* overlong '/' */
		{"\xe0\x80\xaf", 3, false},	/* overlong */
		{"\xed\xa0\x80", 3, false},	/* UTF-16 surrogate */
		{"\xf4\x90\x80\x80", 4, false}, /* above U+10FFFF */
		{"\xff", 1, false},
		{"\x80", 1, false},	    /* lone continuation */
		{"\xe2\x28\xa1", 3, false}, /* bad continuation */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(utf8_valid(cases[i].s, cases[i].n, true), cases[i].ok);
}

static void test_utf8_nul(void **state)
{
	(void)state;
	/* A NUL is UTF-8; refused only on request (protobuf strings become C strings). */
	assert_true(utf8_valid("a\0b", 3, false));
	assert_false(utf8_valid("a\0b", 3, true));
	assert_int_equal(utf8_seq_len((const unsigned char *)"\xf0\x9f\x98\x88", 4), 4);
	assert_int_equal(utf8_seq_len((const unsigned char *)"\xf0\x9f\x98", 3), 0);
}

static void test_jsonstr(void **state)
{
	(void)state;
	buf b = BUF_INIT;
	assert_int_equal(jsonstr_put(&b, "a\"b\\c/\b\f\n\r\t\x01\x1f\x7f caf\xc3\xa9", 20), 0);
	expect_buf(&b, "\"a\\\"b\\\\c/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f caf\xc3\xa9\"");
	buf_reset(&b);
	assert_int_equal(jsonstr_put(&b, "", 0), 0);
	expect_buf(&b, "\"\"");
	buf_reset(&b);
	/* An embedded NUL is escaped, not cut. */
	assert_int_equal(jsonstr_put(&b, "a\0b", 3), 0);
	expect_buf(&b, "\"a\\u0000b\"");
	buf_reset(&b);
	assert_int_equal(jsonstr_put(&b, "ok\xc3", 3), -EILSEQ);
	assert_int_equal(jsonstr_put(&b, "\xed\xa0\x80", 3), -EILSEQ);
	buf_free(&b);
	/* Out of memory is the buffer's failure. */
	mem_fail_arm(1, true);
	assert_int_equal(jsonstr_put(&b, "x", 1), -ENOMEM);
	mem_fail_disarm();
	assert_true(b.failed);
	buf_free(&b);
}

/* ---- file system ---- */

static void test_fs_mkdir_p(void **state)
{
	(void)state;
	char root[] = "/tmp/test_base_XXXXXX", path[128];
	assert_non_null(mkdtemp(root));
	snprintf(path, sizeof(path), "%s/a/b/c", root);
	assert_int_equal(fs_mkdir_p(path), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(fs_mkdir_p(path), 0); /* already there */
	snprintf(path, sizeof(path), "%s/a/b/c/", root);
	assert_int_equal(fs_mkdir_p(path), 0);
	/* A file in the way. */
	snprintf(path, sizeof(path), "%s/f", root);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/f/g", root);
	assert_int_equal(fs_mkdir_p(path), -ENOTDIR);
	char longer[5000];
	memset(longer, 'x', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = 0;
	assert_int_equal(fs_mkdir_p(longer), -ENAMETOOLONG);
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mem_fail_nth),
		cmocka_unit_test(test_mem_fail_persistent),
		cmocka_unit_test(test_mem_strings),
		cmocka_unit_test(test_arena_blocks),
		cmocka_unit_test(test_arena_marks_and_caller_block),
		cmocka_unit_test(test_arena_sizes),
		cmocka_unit_test(test_buf_writes),
		cmocka_unit_test(test_buf_failure_is_sticky),
		cmocka_unit_test(test_bufpool_classes),
		cmocka_unit_test(test_bufpool_reuses_within_bounds),
		cmocka_unit_test(test_buf_grows_through_pool),
		cmocka_unit_test(test_bufpool_thread_exit),
		cmocka_unit_test(test_bufpool_thread_limit),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_base64_encode),
		cmocka_unit_test(test_base64_decode),
		cmocka_unit_test(test_base64_decode_invalid),
		cmocka_unit_test(test_base64_roundtrip),
		cmocka_unit_test(test_base64_variants),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_utf8_nul),
		cmocka_unit_test(test_jsonstr),
		cmocka_unit_test(test_fs_mkdir_p),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
