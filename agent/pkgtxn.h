/* A package transaction on a live root: path changes that can all be
 * undone until they are committed. See agent/pkgtxn.c. */
#pragma once
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

struct agent_txn;

/* rootfd is borrowed and must outlive the transaction. */
int agent_txn_new(int rootfd, struct agent_txn **ret);
/* Rolls back what is not committed. NULL is a no-op. */
void agent_txn_free(struct agent_txn *t);

/* A unique name beside path (same directory, so the same filesystem):
 * "<dir>/.rackboot-<kind>.<pid>.<n>". */
int agent_txn_name(struct agent_txn *t, const char *path, const char *kind, char *ret,
                   size_t retlen);

/* Notes a staged file (removed on rollback until it is swapped in). */
int agent_txn_staged(struct agent_txn *t, const char *tmp);
/* Puts the staged tmp at path with one rename. The file that was there
 * (if any) stays reachable as a hard link beside it until commit, and
 * comes back on rollback; a path that was empty is removed on rollback. */
int agent_txn_swap(struct agent_txn *t, const char *tmp, const char *path);
/* Moves path aside (a rename beside it): gone now, back on rollback,
 * deleted on commit. -ENOENT if there is nothing there. */
int agent_txn_move_aside(struct agent_txn *t, const char *path);
/* A directory this transaction created: removed (if empty) on rollback. */
int agent_txn_created_dir(struct agent_txn *t, const char *path);
/* An existing directory whose mode and owner (st) come back on rollback. */
int agent_txn_dir_meta(struct agent_txn *t, const char *path, const struct stat *st);
/* A directory to remove on commit if it is empty then. */
int agent_txn_rmdir_on_commit(struct agent_txn *t, const char *path);

/* Makes everything final: the kept old files deleted, the directories
 * marked for it removed when empty. Best effort (a leftover is only
 * space). */
void agent_txn_commit(struct agent_txn *t);
/* Undoes everything, last change first. 0, or the first error (the root
 * may then hold leftovers, e.g. files a script made in a new directory). */
int agent_txn_rollback(struct agent_txn *t);
