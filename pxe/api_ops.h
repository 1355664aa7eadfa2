/* The operator API under /api/v1/ (people and scripts: the rackboot CLI,
 * the web page, curl): node list/show/register/update, lifecycle actions,
 * images, profiles and package sets. Every endpoint needs an operator
 * token ("Authorization: Bearer rbo_..."), checked against the hashes in
 * the config's api.tokens_file. api.c hands the requests over
 * (api_ops_path()); http.c asks api_ops_authorize() for the endpoints it
 * serves itself (the event stream, /metrics). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "common/optoken.h"

struct api;
struct api_ops;
struct api_request;
struct api_reply;
struct registry;
struct rb_config;

/* api is the owner (for the live progress records); cfg, reg and repo_fd
 * are borrowed. Loads cfg->api_tokens_file: a missing file is no error
 * (every request is then 401 until a token is made), a malformed one is
 * -EINVAL with err saying which line. */
int api_ops_new(struct api *api, const struct rb_config *cfg, struct registry *reg, int repo_fd,
                struct api_ops **ret, char *err, size_t errlen);
/* NULL is a no-op. */
void api_ops_free(struct api_ops *ops);
/* Operator tokens loaded now. */
size_t api_ops_token_count(struct api_ops *ops);

/* True for the paths api_ops_handle() answers: /api/v1/nodes,
 * /api/v1/nodes/<mac>, /api/v1/nodes/<mac>/actions/..., /api/v1/images...,
 * /api/v1/profiles..., /api/v1/package-sets... */
bool api_ops_path(const char *path);
/* Answers one request on such a path (authorization first, then the
 * route). Same contract as api_handle(). */
int api_ops_handle(struct api_ops *ops, const struct api_request *rq, struct api_reply *ret);

/* Checks an Authorization header value. 0 with the token's name; -EACCES
 * when there is no bearer token, -EPERM when it is not a known operator
 * token; *ret_msg is then the error text for the 401. The tokens file is
 * re-read when it changed (checked at most once a second), so tokens made
 * or revoked while the server runs apply without a restart. */
int api_ops_authorize(struct api_ops *ops, const char *authorization,
                      char ret_name[RB_OPTOKEN_NAME_MAX + 1], const char **ret_msg);
