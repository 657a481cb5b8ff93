#include "io/uuid.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/random.h>

#include "io/clock.h"

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
	snprintf(out, UUID_STR_LEN,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
		 b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
		 b[14], b[15]);
	return 0;
}
