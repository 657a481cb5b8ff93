#include "base/pbdecode.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/utf8.h"

/* ---- reading the wire ---- */

enum { WT_VARINT = 0, WT_FIXED64 = 1, WT_LEN = 2, WT_FIXED32 = 5 };

/* One field as it sits on the wire. */
typedef struct wfield {
	const uint8_t *start;	/* its tag */
	const uint8_t *tag_end; /* after the tag */
	const uint8_t *payload; /* WT_LEN: the payload */
	const uint8_t *end;	/* after the field */
	uint32_t num;
	uint8_t wt;
} wfield;

/* A varint of at most max bytes; false when it does not end in time. */
static bool varint(const uint8_t **pp, const uint8_t *end, int max, uint64_t *v)
{
	const uint8_t *p = *pp;
	*v = 0;
	for (int i = 0; i < max && p < end; i++) {
		uint8_t b = *p++;
		*v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*pp = p;
			return true;
		}
	}
	return false;
}

/* The limits are protobuf-c's own: tags and length prefixes of at most 5 bytes, varints
 * of at most 10, no groups. What it would refuse is refused here first. */
static int next_field(const uint8_t **pp, const uint8_t *end, wfield *f)
{
	uint64_t key, n;
	f->start = *pp;
	if (!varint(pp, end, 5, &key) || key >> 3 == 0 || key >> 3 > 0x1fffffff)
		return -EBADMSG;
	f->tag_end = *pp;
	f->num = (uint32_t)(key >> 3);
	f->wt = key & 7;
	f->payload = NULL;
	switch (f->wt) {
	case WT_VARINT:
		if (!varint(pp, end, 10, &n))
			return -EBADMSG;
		break;
	case WT_FIXED64:
		if (end - *pp < 8)
			return -EBADMSG;
		*pp += 8;
		break;
	case WT_FIXED32:
		if (end - *pp < 4)
			return -EBADMSG;
		*pp += 4;
		break;
	case WT_LEN:
		if (!varint(pp, end, 5, &n) || n > (uint64_t)(end - *pp))
			return -EBADMSG;
		f->payload = *pp;
		*pp += n;
		break;
	default:
		return -EBADMSG;
	}
	f->end = *pp;
	return 0;
}

/* A singular message field outside a oneof: protobuf-c merges its repeated occurrences
 * by copying (members of a oneof replace each other instead). */
static bool merges(const ProtobufCFieldDescriptor *f)
{
	return f->type == PROTOBUF_C_TYPE_MESSAGE && f->label != PROTOBUF_C_LABEL_REPEATED &&
	       !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF);
}

static const ProtobufCFieldDescriptor *field_of(const ProtobufCMessageDescriptor *d,
						const wfield *w)
{
	return protobuf_c_message_descriptor_get_field(d, w->num);
}

static size_t field_index(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f)
{
	return (size_t)(f - d->fields);
}

/* ---- the check ---- */

typedef struct walk {
	char *err;
	size_t cap;
	bool merges;
} walk;

static int fail(walk *w, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(walk *w, int rc, const char *fmt, ...)
{
	if (w->cap) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(w->err, w->cap, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* Field indexes tracked for repeats; a message with more fields (none of ours) is simply
 * always rewritten when such a field appears, which is correct, only slower. */
#define SEEN_BITS 512

static int check(walk *w, const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end,
		 int depth)
{
	uint64_t seen[SEEN_BITS / 64] = {0};
	while (p < end) {
		wfield wf;
		if (next_field(&p, end, &wf))
			return fail(w, -EBADMSG, "malformed protobuf in %s", d->name);
		const ProtobufCFieldDescriptor *f = field_of(d, &wf);
		if (!f)
			continue; /* unknown fields are kept as bytes, never parsed */
		if (f->type == PROTOBUF_C_TYPE_MESSAGE && wf.wt != WT_LEN)
			return fail(w, -EBADMSG,
				    "field '%s' of %s: a message with a scalar wire type", f->name,
				    d->name);
		if (f->type == PROTOBUF_C_TYPE_STRING && wf.wt == WT_LEN &&
		    !utf8_valid(wf.payload, (size_t)(wf.end - wf.payload), true))
			return fail(w, -EILSEQ,
				    "string field '%s' is not UTF-8 or holds a NUL byte", f->name);
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if (depth + 1 > PB_MAX_DEPTH)
			return fail(w, -ELOOP, "messages nested deeper than %d (field '%s' of %s)",
				    PB_MAX_DEPTH, f->name, d->name);
		if (merges(f)) {
			size_t i = field_index(d, f);
			if (i >= SEEN_BITS || (seen[i / 64] >> (i % 64) & 1))
				w->merges = true;
			else
				seen[i / 64] |= (uint64_t)1 << (i % 64);
		}
		int rc = check(w, f->descriptor, wf.payload, wf.end, depth + 1);
		if (rc)
			return rc;
	}
	return 0;
}

int pbdecode_check(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
		   pbdecode_info *info, char *err, size_t cap)
{
	walk w = {.err = err, .cap = cap};
	if (cap)
		err[0] = 0;
	if (!data) /* an empty message given as NULL: no arithmetic on it */
		data = (const uint8_t *)"";
	int rc = check(&w, d, data, data + len, 0);
	if (info)
		info->merges = w.merges;
	return rc;
}

static bool count_fields(const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end,
			 int depth, size_t *left)
{
	while (p < end) {
		wfield wf;
		if (!*left)
			return false;
		(*left)--;
		if (next_field(&p, end, &wf))
			return true;
		const ProtobufCFieldDescriptor *f = field_of(d, &wf);
		if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && wf.wt == WT_LEN &&
		    depth < PB_MAX_DEPTH &&
		    !count_fields(f->descriptor, wf.payload, wf.end, depth + 1, left))
			return false;
	}
	return true;
}

bool pbdecode_fields_within(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
			    size_t max_fields)
{
	if (!data)
		data = (const uint8_t *)"";
	return count_fields(d, data, data + len, 0, &max_fields);
}

/* ---- the merge rewrite ---- */

/* A message's bytes may come in several pieces: the occurrences being merged. */
typedef struct seg {
	const uint8_t *p, *end;
} seg;

/* The output, allocated once at its largest possible size (see pbdecode). */
typedef struct out {
	uint8_t *b;
	size_t len, cap;
} out;

/* Length prefixes are written as 5-byte varints (padded with continuation bits, which
 * protobuf-c reads as any other varint), so that a payload can be written in place before
 * its length is known. */
#define LEN_PAD 5

static int put(out *o, const uint8_t *p, size_t n)
{
	if (n > o->cap - o->len)
		return -ENOMEM; /* cannot happen with the size pbdecode reserves */
	memcpy(o->b + o->len, p, n);
	o->len += n;
	return 0;
}

static void put_padded_len(uint8_t *at, size_t n)
{
	for (int i = 0; i < LEN_PAD - 1; i++)
		at[i] = (uint8_t)(0x80 | ((n >> (7 * i)) & 0x7f));
	at[LEN_PAD - 1] = (uint8_t)((n >> (7 * (LEN_PAD - 1))) & 0x7f);
}

static int rewrite(out *o, const ProtobufCMessageDescriptor *d, const seg *s, size_t ns);

/* The field's tag, then the message made of pieces s[0..ns). */
static int put_message(out *o, const wfield *wf, const ProtobufCFieldDescriptor *f, const seg *s,
		       size_t ns)
{
	int rc = put(o, wf->start, (size_t)(wf->tag_end - wf->start));
	if (rc || LEN_PAD > o->cap - o->len)
		return rc ? rc : -ENOMEM;
	size_t at = o->len;
	o->len += LEN_PAD;
	if ((rc = rewrite(o, f->descriptor, s, ns)))
		return rc;
	put_padded_len(o->b + at, o->len - at - LEN_PAD);
	return 0;
}

#define SMALL_FIELDS 64

/* Copies the fields of the message made of pieces s[0..ns) (already checked), every
 * merging field once: at its first occurrence, with all its occurrences' payloads as
 * pieces. Sub-messages are rewritten in turn. Each input byte is copied once. */
static int rewrite(out *o, const ProtobufCMessageDescriptor *d, const seg *s, size_t ns)
{
	size_t nf = d->n_fields;
	uint32_t small[2 * SMALL_FIELDS];
	uint32_t *cnt = nf <= SMALL_FIELDS ? small : mem_calloc(2 * nf, sizeof(*cnt));
	if (!cnt)
		return -ENOMEM;
	uint32_t *at = cnt + nf; /* where each repeated field's pieces start in occ */
	memset(cnt, 0, 2 * nf * sizeof(*cnt));
	const uint8_t *p;
	wfield wf;
	for (size_t k = 0; k < ns; k++)
		for (p = s[k].p; p < s[k].end && !next_field(&p, s[k].end, &wf);) {
			const ProtobufCFieldDescriptor *f = field_of(d, &wf);
			if (f && merges(f))
				cnt[field_index(d, f)]++;
		}
	size_t total = 0;
	for (size_t i = 0; i < nf; i++)
		if (cnt[i] > 1) {
			at[i] = (uint32_t)total;
			total += cnt[i];
		}
	seg *occ = total ? mem_alloc(total * sizeof(*occ)) : NULL;
	int rc = total && !occ ? -ENOMEM : 0;
	if (occ) {
		uint32_t *fill = mem_calloc(nf, sizeof(*fill));
		if (!fill)
			rc = -ENOMEM;
		for (size_t k = 0; !rc && k < ns; k++)
			for (p = s[k].p; p < s[k].end && !next_field(&p, s[k].end, &wf);) {
				const ProtobufCFieldDescriptor *f = field_of(d, &wf);
				size_t i = f ? field_index(d, f) : 0;
				if (f && merges(f) && cnt[i] > 1)
					occ[at[i] + fill[i]++] = (seg){wf.payload, wf.end};
			}
		mem_free(fill);
	}
	for (size_t k = 0; !rc && k < ns; k++)
		for (p = s[k].p; !rc && p < s[k].end && !next_field(&p, s[k].end, &wf);) {
			const ProtobufCFieldDescriptor *f = field_of(d, &wf);
			if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE) {
				rc = put(o, wf.start, (size_t)(wf.end - wf.start));
				continue;
			}
			size_t i = field_index(d, f);
			if (merges(f) && cnt[i] > 1) {
				rc = put_message(o, &wf, f, occ + at[i], cnt[i]);
				cnt[i] = 0; /* its later occurrences are in already */
			} else if (!merges(f) || cnt[i] == 1) {
				seg one = {wf.payload, wf.end};
				rc = put_message(o, &wf, f, &one, 1);
			}
		}
	mem_free(occ);
	if (cnt != small)
		mem_free(cnt);
	return rc;
}

/* protobuf-c allocates through the node's hook, so that injected failures reach it too.
 * It answers NULL for a failed allocation as for bad bytes: the allocator remembers, so
 * that running out of memory is -ENOMEM and not a peer's fault. */
static void *unpack_alloc(void *failed, size_t n)
{
	void *p = mem_alloc(n);
	if (!p)
		*(bool *)failed = true;
	return p;
}

static void unpack_free(void *failed, void *p)
{
	(void)failed;
	mem_free(p);
}

int pbdecode(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
	     ProtobufCMessage **out_msg, char *err, size_t cap)
{
	pbdecode_info info;
	*out_msg = NULL;
	int rc = pbdecode_check(d, data, len, &info, err, cap);
	if (rc)
		return rc;
	out o = {0};
	if (info.merges) {
		/* Every message field grows by at most 4 bytes (a 5-byte length for one of
		 * at least 1) and takes at least 2 input bytes, so 3x the input is enough. */
		if (len > (SIZE_MAX - 16) / 3)
			return -ENOMEM;
		o.cap = 3 * len + 16;
		if (!(o.b = mem_alloc(o.cap)))
			return -ENOMEM;
		seg whole = {data, data + len};
		if ((rc = rewrite(&o, d, &whole, 1))) {
			mem_free(o.b);
			return rc;
		}
		data = o.b;
		len = o.len;
	}
	bool failed = false;
	ProtobufCAllocator a = {.alloc = unpack_alloc,
				.free = unpack_free,
				.allocator_data = &failed};
	*out_msg = protobuf_c_message_unpack(d, &a, len, data);
	mem_free(o.b);
	if (*out_msg)
		return 0;
	if (cap)
		snprintf(err, cap, failed ? "out of memory decoding %s" : "could not parse %s",
			 d->name);
	return failed ? -ENOMEM : -EBADMSG;
}
