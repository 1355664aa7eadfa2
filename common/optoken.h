/* Operator tokens: the credentials of people and scripts that drive the
 * operator API (rackboot CLI, web page, curl). A token is "rbo_" and 48
 * lowercase hex digits (24 bytes from getrandom); the tokens file keeps only
 * its SHA-256, one "<64 hex> <name>" line per token, so reading the file
 * does not give anyone a token. rackbootd (server side) and the CLI
 * ("token create" on the server's host) share this code. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define RB_OPTOKEN_PREFIX   "rbo_"
#define RB_OPTOKEN_LEN      52 /* "rbo_" + 48 hex */
#define RB_OPTOKEN_NAME_MAX 64
#define RB_OPTOKENS_MAX     4096    /* lines in a tokens file */
#define RB_OPTOKENS_FILE    1048576 /* bytes of a tokens file */

struct rb_optokens;

/* A token name: 1..64 of [A-Za-z0-9._@-], not starting with '-'. */
bool rb_optoken_name_ok(const char *name);

/* Parses a tokens file's text: "<sha256 hex> <name>" lines, '#' comments
 * and blank lines. -EINVAL with "line N: what" in err for a malformed line
 * or a name used twice. */
int rb_optokens_parse(const char *text, size_t len, struct rb_optokens **ret, char *err,
                      size_t errlen);
/* Reads and parses path. -ENOENT when it does not exist (err says so). */
int rb_optokens_load(const char *path, struct rb_optokens **ret, char *err, size_t errlen);
/* NULL is a no-op. */
void rb_optokens_free(struct rb_optokens *set);
size_t rb_optokens_count(const struct rb_optokens *set);
const char *rb_optokens_name(const struct rb_optokens *set, size_t i);

/* The name of the entry whose hash is SHA-256(token), or NULL. Compares
 * every entry with CRYPTO_memcmp (no early exit), so the time does not
 * depend on where or whether the token matched. */
const char *rb_optokens_check(const struct rb_optokens *set, const char *token, size_t len);

/* Makes a new token for name, appends its hash line to path (created 0600;
 * when run as root, owned like the directory it is in, so that a server
 * that dropped to that directory's owner can read it) and writes the token
 * to ret_token. The file is locked (flock) while it is checked and
 * written. -EEXIST if name is taken, -EINVAL for a bad name or a malformed
 * file, other -errno from the file system; err says what to do. */
int rb_optoken_create(const char *path, const char *name, char ret_token[RB_OPTOKEN_LEN + 1],
                      char *err, size_t errlen);
/* Removes name's line (temporary file, fsync, rename). -ENOENT if no
 * token has that name. */
int rb_optoken_revoke(const char *path, const char *name, char *err, size_t errlen);

/* Parses "Authorization: Bearer <token>" (scheme case-insensitive, spaces
 * around the token allowed). Returns the token and its length, or NULL. */
const char *rb_bearer_token(const char *authorization, size_t *ret_len);
