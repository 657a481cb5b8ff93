/* The struct that holds a member, from a pointer to the member: how a callback handed an
 * embedded timer, task, job or list node finds the object it belongs to. */
#ifndef BASE_CONTAINER_OF_H
#define BASE_CONTAINER_OF_H
#include <stddef.h>

/* clang-format would read (char *)(ptr) - offsetof as a cast of a negation. */
/* clang-format off */
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))
/* clang-format on */

#endif
