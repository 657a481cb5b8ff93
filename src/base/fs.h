/* File system helpers that more than one layer needs (the node's data directory, the
 * store's tree). They block: never on a reactor thread. */
#ifndef BASE_FS_H
#define BASE_FS_H

/* Makes path and its missing parents (mode 0755), like mkdir -p. 0 or -errno
 * (-ENAMETOOLONG past PATH_MAX). */
int fs_mkdir_p(const char *path);

#endif
