/* A growing array of malloc'd strings that remembers a failed allocation, so that a
 * caller pushes a series and checks once. */
#ifndef SERVICES_STRVEC_H
#define SERVICES_STRVEC_H
#include <stdbool.h>
#include <stddef.h>

typedef struct strvec {
	char **v;
	size_t n, cap;
	bool failed;
} strvec;

/* Takes str (NULL: a failed allocation); after a failure, frees what it is given. */
void strvec_push(strvec *s, char *str);
void strvec_free(strvec *s);
bool strvec_has(const strvec *s, const char *str);

#endif
