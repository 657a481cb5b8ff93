/* UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then random bits; sortable by time. */
#ifndef BASE_UUID_H
#define BASE_UUID_H

#define UUID_STR_LEN 37 /* 36 characters and the NUL */

/* Writes a new UUIDv7 in its canonical lowercase form. 0 or -errno (no randomness). */
int uuid7_make(char out[UUID_STR_LEN]);

#endif
