/* Operator tokens: generation, the tokens file (parse, append, revoke) and
 * the constant-time check. Owns the parsed set (an array of hash/name
 * pairs). Never keeps or writes a token in clear: only the token's SHA-256
 * reaches the disk, and the clear token lives in the caller's buffer,
 * which this code wipes wherever it made a copy. */
#include "common/optoken.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/sha256.h"
#include "common/util.h"

struct optoken_entry {
	uint8_t hash[RB_SHA256_LEN];
	char name[RB_OPTOKEN_NAME_MAX + 1];
};

struct rb_optokens {
	struct optoken_entry *e;
	size_t n;
};

bool rb_optoken_name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > RB_OPTOKEN_NAME_MAX || name[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '@' || c == '-'))
			return false;
	}
	return true;
}

void rb_optokens_free(struct rb_optokens *set)
{
	if (!set)
		return;
	free(set->e);
	free(set);
}

size_t rb_optokens_count(const struct rb_optokens *set)
{
	return set ? set->n : 0;
}

const char *rb_optokens_name(const struct rb_optokens *set, size_t i)
{
	return set && i < set->n ? set->e[i].name : NULL;
}

/* One line without its '\n': 0 (entry filled, or *ret_blank), or -EINVAL. */
static int parse_line(const char *s, size_t len, struct optoken_entry *ret, bool *ret_blank,
                      char *why, size_t whylen)
{
	char hex[RB_SHA256_HEX_LEN + 1];
	size_t i = 0, name_start, name_len;

	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	while (len > i && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r'))
		len--;
	*ret_blank = i == len || s[i] == '#';
	if (*ret_blank)
		return 0;
	if (len - i < RB_SHA256_HEX_LEN + 2 ||
	    (s[i + RB_SHA256_HEX_LEN] != ' ' && s[i + RB_SHA256_HEX_LEN] != '\t'))
		return rb_errf(why, whylen,
		               "expected \"<64 hex digits of SHA-256> <name>\" (make lines with "
		               "\"rackbootd token create NAME\")");
	memcpy(hex, s + i, RB_SHA256_HEX_LEN);
	hex[RB_SHA256_HEX_LEN] = '\0';
	if (rb_unhex(hex, ret->hash, sizeof(ret->hash)) < 0)
		return rb_errf(why, whylen, "the hash is not 64 hex digits");
	name_start = i + RB_SHA256_HEX_LEN;
	while (name_start < len && (s[name_start] == ' ' || s[name_start] == '\t'))
		name_start++;
	name_len = len - name_start;
	if (name_len == 0 || name_len > RB_OPTOKEN_NAME_MAX)
		return rb_errf(why, whylen, "the name must be 1 to %d characters",
		               RB_OPTOKEN_NAME_MAX);
	memcpy(ret->name, s + name_start, name_len);
	ret->name[name_len] = '\0';
	if (!rb_optoken_name_ok(ret->name))
		return rb_errf(why, whylen,
		               "the name may only hold letters, digits and ._@- (and not start "
		               "with -)");
	return 0;
}

int rb_optokens_parse(const char *text, size_t len, struct rb_optokens **ret, char *err,
                      size_t errlen)
{
	struct rb_optokens *set;
	size_t pos = 0, line = 0, cap = 0;
	char why[200];
	int r = 0;

	set = calloc(1, sizeof(*set));
	if (!set)
		return -ENOMEM;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len;
		struct optoken_entry e;
		bool blank;

		line++;
		if (memchr(text + pos, '\0', end - pos)) {
			r = rb_errf(err, errlen, "line %zu: holds a NUL byte", line);
			goto fail;
		}
		r = parse_line(text + pos, end - pos, &e, &blank, why, sizeof(why));
		if (r < 0) {
			rb_errf(err, errlen, "line %zu: %s", line, why);
			goto fail;
		}
		pos = nl ? end + 1 : len;
		if (blank)
			continue;
		for (size_t i = 0; i < set->n; i++)
			if (!strcmp(set->e[i].name, e.name)) {
				r = rb_errf(
				        err, errlen,
				        "line %zu: the name \"%s\" is used twice (names must be "
				        "unique)",
				        line, e.name);
				goto fail;
			}
		if (set->n == RB_OPTOKENS_MAX) {
			r = rb_errf(err, errlen, "more than %d tokens", RB_OPTOKENS_MAX);
			goto fail;
		}
		if (set->n == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			struct optoken_entry *ne = realloc(set->e, ncap * sizeof(*ne));

			if (!ne) {
				r = -ENOMEM;
				goto fail;
			}
			set->e = ne;
			cap = ncap;
		}
		set->e[set->n++] = e;
	}
	*ret = set;
	return 0;
fail:
	rb_optokens_free(set);
	return r;
}

/* Reads all of fd (a regular file of at most RB_OPTOKENS_FILE bytes). */
static int read_fd(int fd, char **ret, size_t *ret_len, char *err, size_t errlen)
{
	struct stat st;
	char *buf;
	int r;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode)) {
		rb_errf(err, errlen, "not a regular file");
		return -EINVAL;
	}
	if (st.st_size > RB_OPTOKENS_FILE) {
		rb_errf(err, errlen, "larger than %d bytes", RB_OPTOKENS_FILE);
		return -EFBIG;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return -ENOMEM;
	r = st.st_size ? rb_pread_all(fd, buf, (size_t)st.st_size, 0) : 0;
	if (r < 0) {
		free(buf);
		return r;
	}
	buf[st.st_size] = '\0';
	*ret = buf;
	*ret_len = (size_t)st.st_size;
	return 0;
}

int rb_optokens_load(const char *path, struct rb_optokens **ret, char *err, size_t errlen)
{
	char why[300];
	size_t len = 0;
	char *buf = NULL;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		r = -errno;
		rb_errf(err, errlen, "%s: %s", path, strerror(errno));
		return r;
	}
	why[0] = '\0';
	r = read_fd(fd, &buf, &len, why, sizeof(why));
	close(fd);
	if (r < 0) {
		rb_errf(err, errlen, "%s: %s", path, *why ? why : strerror(-r));
		return r;
	}
	r = rb_optokens_parse(buf, len, ret, why, sizeof(why));
	free(buf);
	if (r < 0)
		rb_errf(err, errlen, "%s: %s", path, why);
	return r;
}

const char *rb_optokens_check(const struct rb_optokens *set, const char *token, size_t len)
{
	uint8_t h[RB_SHA256_LEN];
	const char *found = NULL;

	if (!set || !token || len == 0)
		return NULL;
	rb_sha256(token, len, h);
	for (size_t i = 0; i < set->n; i++) {
		/* Every entry is compared; the branch below only picks the
		 * result, it does not end the loop. */
		bool eq = CRYPTO_memcmp(h, set->e[i].hash, sizeof(h)) == 0;

		if (eq && !found)
			found = set->e[i].name;
	}
	return found;
}

const char *rb_bearer_token(const char *auth, size_t *ret_len)
{
	const char *t;
	size_t len;

	if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
		return NULL;
	t = auth + 7;
	while (*t == ' ')
		t++;
	len = strnlen(t, 4096);
	while (len > 0 && t[len - 1] == ' ')
		len--;
	if (len == 0 || len >= 4096)
		return NULL;
	*ret_len = len;
	return t;
}

/* ---- writing the file ----------------------------------------------------- */

static int random_bytes(uint8_t *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t k = getrandom(buf + got, n - got, 0);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		got += (size_t)k;
	}
	return 0;
}

/* When root, gives a file we created the owner of its directory: the
 * server may have dropped privileges to that user. */
static void chown_like_dir(int fd, const char *path)
{
	char *copy;
	struct stat st;

	if (geteuid() != 0)
		return;
	copy = strdup(path);
	if (!copy)
		return;
	if (stat(dirname(copy), &st) == 0 && fchown(fd, st.st_uid, st.st_gid) < 0) {
		/* Not fatal: the file stays root's; the server says so when
		 * it cannot read it. */
	}
	free(copy);
}

/* Opens path for update with an exclusive lock and reads it. */
static int open_locked(const char *path, int flags, bool *ret_created, int *ret_fd,
                       struct rb_optokens **ret_set, char **ret_text, size_t *ret_len, char *err,
                       size_t errlen)
{
	char why[300];
	int fd, r;

	*ret_created = false;
	fd = open(path, flags | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd >= 0)
		*ret_created = true;
	else if (errno == EEXIST)
		fd = open(path, flags | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		r = -errno;
		rb_errf(err, errlen, "%s: %s (check the path and that you may write there)", path,
		        strerror(errno));
		return r;
	}
	if (flock(fd, LOCK_EX) < 0) {
		r = -errno;
		close(fd);
		rb_errf(err, errlen, "%s: cannot lock: %s", path, strerror(-r));
		return r;
	}
	why[0] = '\0';
	r = read_fd(fd, ret_text, ret_len, why, sizeof(why));
	if (r == 0) {
		r = rb_optokens_parse(*ret_text, *ret_len, ret_set, why, sizeof(why));
		if (r < 0) {
			free(*ret_text);
			*ret_text = NULL;
		}
	}
	if (r < 0) {
		close(fd);
		rb_errf(err, errlen, "%s: %s (fix or remove that line)", path,
		        *why ? why : strerror(-r));
		return r;
	}
	*ret_fd = fd;
	return 0;
}

int rb_optoken_create(const char *path, const char *name, char ret_token[RB_OPTOKEN_LEN + 1],
                      char *err, size_t errlen)
{
	uint8_t raw[(RB_OPTOKEN_LEN - 4) / 2], h[RB_SHA256_LEN];
	char token[RB_OPTOKEN_LEN + 1], hex[RB_SHA256_HEX_LEN + 1];
	char line[RB_SHA256_HEX_LEN + RB_OPTOKEN_NAME_MAX + 4];
	struct rb_optokens *set = NULL;
	char *text = NULL;
	size_t len = 0, n;
	bool created;
	int fd = -1, r;

	if (!rb_optoken_name_ok(name))
		return rb_errf(err, errlen,
		               "token name \"%s\": use 1 to %d letters, digits or ._@- (e.g. "
		               "alice or ci-deploy)",
		               name ? name : "", RB_OPTOKEN_NAME_MAX);
	r = open_locked(path, O_RDWR | O_APPEND, &created, &fd, &set, &text, &len, err, errlen);
	if (r < 0)
		return r;
	for (size_t i = 0; i < set->n; i++)
		if (!strcmp(set->e[i].name, name)) {
			r = -EEXIST;
			rb_errf(err, errlen,
			        "%s: a token named \"%s\" exists already (pick another name, or "
			        "revoke it first: rackbootd token revoke %s)",
			        path, name, name);
			goto out;
		}
	r = random_bytes(raw, sizeof(raw));
	if (r < 0) {
		rb_errf(err, errlen, "getrandom: %s", strerror(-r));
		goto out;
	}
	memcpy(token, RB_OPTOKEN_PREFIX, 4);
	rb_hex(raw, sizeof(raw), token + 4);
	explicit_bzero(raw, sizeof(raw));
	rb_sha256(token, RB_OPTOKEN_LEN, h);
	rb_hex(h, sizeof(h), hex);
	n = (size_t)snprintf(line, sizeof(line), "%s%s %s\n",
	                     len > 0 && text[len - 1] != '\n' ? "\n" : "", hex, name);
	if (created)
		chown_like_dir(fd, path);
	r = rb_write_all(fd, line, n);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (r < 0) {
		rb_errf(err, errlen, "%s: cannot write: %s", path, strerror(-r));
		goto out;
	}
	memcpy(ret_token, token, sizeof(token));
out:
	explicit_bzero(token, sizeof(token));
	rb_optokens_free(set);
	free(text);
	close(fd);
	return r;
}

int rb_optoken_revoke(const char *path, const char *name, char *err, size_t errlen)
{
	struct rb_optokens *set = NULL;
	char *text = NULL, *tmp = NULL;
	size_t len = 0, pos = 0;
	struct stat st;
	bool created, found = false;
	int fd = -1, tfd = -1, r;

	r = open_locked(path, O_RDWR, &created, &fd, &set, &text, &len, err, errlen);
	if (r < 0)
		return r;
	if (created) {
		unlink(path);
		r = -ENOENT;
		rb_errf(err, errlen, "%s did not exist: there is no token \"%s\"", path, name);
		goto out;
	}
	if (fstat(fd, &st) < 0 || asprintf(&tmp, "%s.tmp", path) < 0) {
		r = -errno;
		tmp = NULL;
		goto out;
	}
	tfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (tfd < 0) {
		r = -errno;
		rb_errf(err, errlen, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	/* Every line is copied except the entry of that name. */
	while (pos < len && r == 0) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) + 1 : len;
		struct optoken_entry e;
		bool blank;
		char why[8];

		if (parse_line(text + pos, end - pos - (nl ? 1 : 0), &e, &blank, why,
		               sizeof(why)) == 0 &&
		    !blank && !strcmp(e.name, name))
			found = true;
		else
			r = rb_write_all(tfd, text + pos, end - pos);
		pos = end;
	}
	if (r == 0 && !found) {
		r = -ENOENT;
		rb_errf(err, errlen, "%s: there is no token named \"%s\"", path, name);
		goto out;
	}
	if (r == 0 && (fchmod(tfd, st.st_mode & 07777) < 0 ||
	               (geteuid() == 0 && fchown(tfd, st.st_uid, st.st_gid) < 0) ||
	               fsync(tfd) < 0 || rename(tmp, path) < 0))
		r = -errno;
	if (r < 0 && r != -ENOENT)
		rb_errf(err, errlen, "%s: cannot rewrite: %s", path, strerror(-r));
out:
	if (tfd >= 0) {
		close(tfd);
		if (r < 0)
			unlink(tmp);
	}
	free(tmp);
	rb_optokens_free(set);
	free(text);
	close(fd);
	return r;
}
