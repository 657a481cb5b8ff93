/* Static files the node serves on GET over HTTP/1.1 and HTTP/2 (the web console's page,
 * script and style sheet), built into the binary (console/embed.py). h2 serves them as
 * bytes; what they are is the layers' above. */
#ifndef H2_ASSET_H
#define H2_ASSET_H
#include <stddef.h>

typedef struct h2_asset {
	const char *path;	  /* "/", "/app.js": the request path without its query */
	const char *content_type; /* the Content-Type header's value */
	const char *etag;	  /* a strong ETag, quoted: a digest of data */
	const unsigned char *data;
	size_t len;
} h2_asset;

#endif
