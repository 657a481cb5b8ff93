/* The struct that holds a member, from a pointer to the member: how a callback handed an
 * embedded timer, task, job or list node finds the object it belongs to. */
#ifndef BASE_CONTAINER_OF_H
#define BASE_CONTAINER_OF_H
#include <stddef.h>

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#endif
