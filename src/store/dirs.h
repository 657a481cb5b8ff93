/* Directory helpers of the store, below its other modules: whole trees counted and removed
 * through descriptors without following links, directories emptied (paths are made by
 * base/fs.h). Functions
 * return 0 or a negative errno and set no message (their callers say what they were
 * doing). */
#ifndef STORE_DIRS_H
#define STORE_DIRS_H
#include <dirent.h>
#include <stdint.h>

/* A directory stream on a descriptor of its own for name inside dfd (a dup would share
 * the read position); flags are added to O_RDONLY | O_DIRECTORY. */
int dirs_open(int dfd, const char *name, int flags, DIR **out);
/* Regular files and their total size under dirfd, not following links. */
int dirs_tree_stat(int dirfd, int64_t *count, int64_t *bytes);
/* Removes name (a file or a whole tree) inside dirfd, not following links; *count
 * (optional) gets the regular files removed. */
int dirs_tree_remove(int dirfd, const char *name, int64_t *count);
/* Removes everything inside dirfd, best effort. */
void dirs_clear(int dirfd);

#endif
