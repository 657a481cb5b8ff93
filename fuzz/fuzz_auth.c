/* The authorization header as peers send it: auth_parse_bearer and auth_parse_token on
 * arbitrary bytes never read outside the value, give a token without the spaces around it,
 * and accept a token exactly when it has the node's form (checked against a reference
 * written here from the definition: "col_", 16 lowercase hex, "_", 64 lowercase hex). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_check.h"
#include "services/auth.h"

static bool hex(uint8_t c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

static bool reference_token(const uint8_t *t, size_t n)
{
	if (n != 85 || memcmp(t, "col_", 4) || t[20] != '_')
		return false;
	for (size_t i = 4; i < n; i++)
		if (i != 20 && !hex(t[i]))
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly size bytes: ASan sees any read past the value. */
	uint8_t *v = malloc(size ? size : 1);
	if (!v)
		return 0;
	memcpy(v, data, size);
	const uint8_t *tok;
	size_t len;
	if (!auth_parse_bearer(v, size, &tok, &len)) {
		CHECK(size > 7 && !strncasecmp((const char *)v, "bearer", 6));
		CHECK(tok > v + 6 && tok + len <= v + size && len > 0);
		CHECK(tok[0] != ' ' && tok[0] != '\t' && tok[len - 1] != ' ' &&
		      tok[len - 1] != '\t');
	} else {
		tok = v;
		len = size;
	}
	char id[AUTH_ID_HEX + 1];
	bool ok = auth_parse_token(tok, len, id);
	CHECK(ok == reference_token(tok, len));
	if (ok)
		CHECK(strlen(id) == AUTH_ID_HEX && !memcmp(id, tok + 4, AUTH_ID_HEX));
	free(v);
	return 0;
}
