#include "base/uuid.h"

#include <errno.h>
#include <stdint.h>
#include <sys/random.h>

#include "base/clock.h"
#include "base/hex.h"

int uuid7_make(char out[UUID_STR_LEN])
{
	uint8_t b[16];
	if (getrandom(b + 6, 10, 0) != 10)
		return -errno;
	uint64_t ms = (uint64_t)(clock_wall_ns() / NS_PER_MS);
	for (int i = 0; i < 6; i++)
		b[i] = (uint8_t)(ms >> (40 - 8 * i));
	b[6] = (uint8_t)(0x70 | (b[6] & 0x0f)); /* version 7 */
	b[8] = (uint8_t)(0x80 | (b[8] & 0x3f)); /* variant 10 */
	/* By hand: one per record Create, and snprintf's format parsing cost more than the
	 * rest together. */
	char *o = out;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = hex_lower(b[i] >> 4);
		*o++ = hex_lower(b[i]);
	}
	*o = 0;
	return 0;
}
