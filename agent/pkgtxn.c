/* pkgtxn: the undo log of one package's changes to a root, in memory.
 *
 * Every change is made so that it can be reversed by renames alone, and
 * without a moment where a path the package replaces is missing (a live
 * node runs while its packages change):
 *  - a new file is staged beside its place under a hidden name and
 *    renamed over the old one; the old one was first hard-linked to
 *    another hidden name beside it, so rollback is one rename back;
 *  - a removed file is renamed aside (hidden, same directory) and deleted
 *    only at commit;
 *  - created directories are removed on rollback (children first, as the
 *    log is undone backwards), existing ones get their mode and owner back.
 * Staying in the file's own directory keeps every rename on one
 * filesystem, wherever /var or /usr are mounted.
 *
 * Owns the log. Never follows a symlink (all *at() calls below the root
 * with paths that pkginstall checked), never touches a path it did not log. */
#include "agent/pkgtxn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum op { OP_STAGED, OP_SWAP, OP_ASIDE, OP_MKDIR, OP_META, OP_RMDIR_COMMIT };

struct entry {
	enum op op;
	char *path;
	char *aside; /* OP_SWAP: the old file's hard link ("" = nothing was there); OP_ASIDE */
	struct stat st;
	bool done; /* OP_STAGED: swapped in since */
};

struct agent_txn {
	int rootfd;
	struct entry *e;
	size_t n, cap;
	unsigned seq;
	bool finished;
};

int agent_txn_new(int rootfd, struct agent_txn **ret)
{
	struct agent_txn *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->rootfd = rootfd;
	*ret = t;
	return 0;
}

void agent_txn_free(struct agent_txn *t)
{
	if (!t)
		return;
	if (!t->finished)
		agent_txn_rollback(t);
	for (size_t i = 0; i < t->n; i++) {
		free(t->e[i].path);
		free(t->e[i].aside);
	}
	free(t->e);
	free(t);
}

static struct entry *add(struct agent_txn *t, enum op op, const char *path, const char *aside)
{
	struct entry *x;

	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct entry *e = realloc(t->e, cap * sizeof(*e));

		if (!e)
			return NULL;
		t->e = e;
		t->cap = cap;
	}
	x = &t->e[t->n];
	memset(x, 0, sizeof(*x));
	x->op = op;
	x->path = strdup(path);
	x->aside = aside ? strdup(aside) : NULL;
	if (!x->path || (aside && !x->aside)) {
		free(x->path);
		free(x->aside);
		return NULL;
	}
	t->n++;
	return x;
}

int agent_txn_name(struct agent_txn *t, const char *path, const char *kind, char *ret,
                   size_t retlen)
{
	const char *slash = strrchr(path, '/');
	int n;

	n = snprintf(ret, retlen, "%.*s%s.rackboot-%s.%ld.%u", slash ? (int)(slash - path) : 0,
	             path, slash ? "/" : "", kind, (long)getpid(), t->seq++);
	return n < 0 || (size_t)n >= retlen ? -ENAMETOOLONG : 0;
}

int agent_txn_staged(struct agent_txn *t, const char *tmp)
{
	return add(t, OP_STAGED, tmp, NULL) ? 0 : -ENOMEM;
}

int agent_txn_swap(struct agent_txn *t, const char *tmp, const char *path)
{
	char old[4200];
	struct entry *x;
	struct stat st;
	bool existed = fstatat(t->rootfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
	int e;

	if (existed) {
		if ((e = agent_txn_name(t, path, "old", old, sizeof(old))) < 0)
			return e;
		if (linkat(t->rootfd, path, t->rootfd, old, 0) < 0)
			return -errno;
	} else {
		old[0] = '\0';
	}
	x = add(t, OP_SWAP, path, old);
	if (!x) {
		if (existed)
			unlinkat(t->rootfd, old, 0);
		return -ENOMEM;
	}
	if (renameat(t->rootfd, tmp, t->rootfd, path) < 0) {
		e = -errno;
		if (existed)
			unlinkat(t->rootfd, old, 0);
		free(x->path);
		free(x->aside);
		t->n--;
		return e;
	}
	for (size_t i = 0; i < t->n; i++)
		if (t->e[i].op == OP_STAGED && !t->e[i].done && !strcmp(t->e[i].path, tmp))
			t->e[i].done = true;
	return 0;
}

int agent_txn_move_aside(struct agent_txn *t, const char *path)
{
	char aside[4200];
	int e;

	if ((e = agent_txn_name(t, path, "old", aside, sizeof(aside))) < 0)
		return e;
	if (!add(t, OP_ASIDE, path, aside))
		return -ENOMEM;
	if (renameat(t->rootfd, path, t->rootfd, aside) < 0) {
		e = -errno;
		t->n--;
		free(t->e[t->n].path);
		free(t->e[t->n].aside);
		return e;
	}
	return 0;
}

int agent_txn_created_dir(struct agent_txn *t, const char *path)
{
	return add(t, OP_MKDIR, path, NULL) ? 0 : -ENOMEM;
}

int agent_txn_dir_meta(struct agent_txn *t, const char *path, const struct stat *st)
{
	struct entry *x = add(t, OP_META, path, NULL);

	if (!x)
		return -ENOMEM;
	x->st = *st;
	return 0;
}

int agent_txn_rmdir_on_commit(struct agent_txn *t, const char *path)
{
	return add(t, OP_RMDIR_COMMIT, path, NULL) ? 0 : -ENOMEM;
}

void agent_txn_commit(struct agent_txn *t)
{
	for (size_t i = 0; i < t->n; i++) {
		struct entry *x = &t->e[i];

		if ((x->op == OP_SWAP && x->aside[0]) || x->op == OP_ASIDE)
			unlinkat(t->rootfd, x->aside, 0);
	}
	/* deepest first: the log holds them in the order the package listed them */
	for (size_t i = t->n; i-- > 0;)
		if (t->e[i].op == OP_RMDIR_COMMIT)
			unlinkat(t->rootfd, t->e[i].path, AT_REMOVEDIR);
	t->finished = true;
}

int agent_txn_rollback(struct agent_txn *t)
{
	int ret = 0;

	for (size_t i = t->n; i-- > 0;) {
		struct entry *x = &t->e[i];
		int r = 0;

		switch (x->op) {
		case OP_STAGED:
			if (!x->done && unlinkat(t->rootfd, x->path, 0) < 0 && errno != ENOENT)
				r = -errno;
			break;
		case OP_SWAP:
			if (x->aside[0])
				r = renameat(t->rootfd, x->aside, t->rootfd, x->path) < 0 ? -errno
				                                                          : 0;
			else if (unlinkat(t->rootfd, x->path, 0) < 0 && errno != ENOENT)
				r = -errno;
			break;
		case OP_ASIDE:
			r = renameat(t->rootfd, x->aside, t->rootfd, x->path) < 0 ? -errno : 0;
			break;
		case OP_MKDIR:
			if (unlinkat(t->rootfd, x->path, AT_REMOVEDIR) < 0 && errno != ENOENT)
				r = -errno;
			break;
		case OP_META:
			fchownat(t->rootfd, x->path, x->st.st_uid, x->st.st_gid,
			         AT_SYMLINK_NOFOLLOW);
			if (fchmodat(t->rootfd, x->path, x->st.st_mode & 07777, 0) < 0)
				r = -errno;
			break;
		case OP_RMDIR_COMMIT:
			break;
		}
		if (r < 0 && ret == 0)
			ret = r;
	}
	t->finished = true;
	return ret;
}
