/* pbjson: the transcoder on the command line, for cross-checks against protobuf's own JSON
 * (tests/e2e/test_json_transcode.py).
 *
 *   pbjson [-p] [-r] [-d SET] [-n NS] TYPE
 *       stdin protobuf bytes of TYPE -> JSON on stdout (-p: .proto field names);
 *       with -r, stdin JSON -> protobuf bytes on stdout.
 *   pbjson --batch [-d SET] [-n NS]
 *       each stdin line "MODE TYPE BASE64" -> one stdout line "ok OUTPUT" or "err MESSAGE".
 *       MODE j or p: BASE64 is protobuf bytes, OUTPUT the JSON (JSON or .proto names);
 *       MODE r: BASE64 is JSON text, OUTPUT the protobuf bytes in base64.
 *
 * The pool holds the compiled-in API; -d adds a serialized FileDescriptorSet, into
 * namespace NS when given (types are then looked up from NS). Exit status: 0, 1 when a
 * conversion failed (single mode), 2 on bad usage or setup. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base64.h"
#include "store/json.h"
#include "store/typepool.h"

extern const uint8_t api_descriptor_set[];
extern const size_t api_descriptor_set_len;

static int usage(void)
{
	fprintf(stderr, "usage: pbjson [-p] [-r] [-d SET] [-n NS] TYPE\n"
			"       pbjson --batch [-d SET] [-n NS]\n");
	return 2;
}

static int read_all(FILE *f, buf *b)
{
	for (;;) {
		if (buf_reserve(b, 65536))
			return -ENOMEM;
		size_t n = fread(b->data + b->len, 1, 65536, f);
		b->len += n;
		if (n < 65536)
			return ferror(f) ? -EIO : 0;
	}
}

/* 0, or nonzero with *why saying what went wrong. */
static int convert(tp_pool *tp, const char *ns, char mode, const char *type, const char *in,
		   size_t len, buf *out, const char **why)
{
	const tp_message *m = tp_find_message(tp, ns, type);
	if (!m) {
		*why = "unknown message type";
		return -EINVAL;
	}
	int rc = mode == 'r' ? json_to_proto(tp, ns, m, in, len, out)
			     : json_from_proto(tp, ns, m, (const uint8_t *)in, len,
					       mode == 'p' ? JSON_PROTO_NAMES : 0, out);
	*why = store_err_msg();
	return rc;
}

static int batch(tp_pool *tp, const char *ns)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	buf out = BUF_INIT, enc = BUF_INIT;
	while ((n = getline(&line, &cap, stdin)) > 0) {
		while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		char *type = strchr(line, ' ');
		char *data = type ? strchr(type + 1, ' ') : NULL;
		if (!data || type != line + 1 || !strchr("jpr", line[0])) {
			printf("err bad request line\n");
			continue;
		}
		*data++ = '\0';
		type++;
		size_t dlen = strlen(data);
		uint8_t *raw = malloc(base64_decoded_max(dlen));
		long rlen = raw ? base64_decode(raw, data, dlen, BASE64_EITHER) : -1;
		if (rlen < 0) {
			printf("err bad base64\n");
			free(raw);
			continue;
		}
		const char *why;
		out.len = 0;
		int rc =
			convert(tp, ns, line[0], type, (const char *)raw, (size_t)rlen, &out, &why);
		free(raw);
		if (rc) {
			char msg[512];
			snprintf(msg, sizeof(msg), "%s", why);
			for (char *p = msg; *p; p++)
				if (*p == '\n')
					*p = ' ';
			printf("err %s\n", msg);
			continue;
		}
		if (line[0] == 'r') {
			enc.len = 0;
			base64_put(&enc, out.data, out.len, 0);
			printf("ok %.*s\n", (int)enc.len, enc.text ? enc.text : "");
		} else {
			printf("ok %.*s\n", (int)out.len, out.data);
		}
		fflush(stdout);
	}
	free(line);
	buf_free(&out);
	buf_free(&enc);
	return 0;
}

int main(int argc, char **argv)
{
	bool proto_names = false, reverse = false, batch_mode = false;
	const char *set_path = NULL, *ns = NULL, *type = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-p"))
			proto_names = true;
		else if (!strcmp(argv[i], "-r"))
			reverse = true;
		else if (!strcmp(argv[i], "--batch"))
			batch_mode = true;
		else if (!strcmp(argv[i], "-d") && i + 1 < argc)
			set_path = argv[++i];
		else if (!strcmp(argv[i], "-n") && i + 1 < argc)
			ns = argv[++i];
		else if (argv[i][0] != '-' && !type)
			type = argv[i];
		else
			return usage();
	}
	if (batch_mode == (type != NULL))
		return usage();

	tp_pool *tp = tp_new();
	if (!tp || tp_add_set(tp, NULL, api_descriptor_set, api_descriptor_set_len)) {
		fprintf(stderr, "pbjson: compiled-in types: %s\n",
			tp ? store_err_msg() : "out of memory");
		return 2;
	}
	if (set_path) {
		FILE *f = fopen(set_path, "rb");
		buf set = BUF_INIT;
		if (!f || read_all(f, &set)) {
			fprintf(stderr, "pbjson: cannot read %s\n", set_path);
			return 2;
		}
		fclose(f);
		if (tp_add_set(tp, ns, (const uint8_t *)set.data, set.len)) {
			fprintf(stderr, "pbjson: %s: %s\n", set_path, store_err_msg());
			return 2;
		}
		buf_free(&set);
	}

	int status = 0;
	if (batch_mode) {
		status = batch(tp, ns);
	} else {
		buf in = BUF_INIT, out = BUF_INIT;
		if (read_all(stdin, &in)) {
			fprintf(stderr, "pbjson: cannot read stdin\n");
			return 2;
		}
		char mode = reverse ? 'r' : proto_names ? 'p' : 'j';
		const char *why;
		if (convert(tp, ns, mode, type, in.text ? in.text : "", in.len, &out, &why)) {
			fprintf(stderr, "pbjson: %s\n", why);
			status = 1;
		} else {
			fwrite(out.data, 1, out.len, stdout);
			if (!reverse)
				putchar('\n');
		}
		buf_free(&in);
		buf_free(&out);
	}
	tp_free(tp);
	return status;
}
