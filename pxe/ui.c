/* The web dashboard's files: templates/web/index.html, app.js and app.css,
 * built into rackbootd at compile time (scripts/embed-files.py, symbol
 * rb_ui_files) so that running it needs no build step and no files on disk.
 * The page itself is static and holds no secret; it asks the operator for a
 * token and talks to /api/v1/ with it (docs/dashboard.md).
 *
 * Every reply carries a strict Content-Security-Policy (only this origin's
 * own script, style and API; no inline code, no frames, no forms posting
 * anywhere), nosniff, no referrer, and "Cache-Control: no-cache" with a
 * strong ETag over the content, so a browser revalidates (304) and a new
 * rackbootd's page is never hidden behind a cached old one.
 *
 * Owns nothing: the files are static data and each reply points into them.
 * Never reads the disk, never allocates, never touches a socket (http.c
 * does). */
#include "pxe/ui.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "pxe/embedded.h"
#include "pxe/httpcond.h"

#define UI_PREFIX "/ui"

extern const struct rb_embedded_file rb_ui_files[];

/* script-src and style-src 'self': app.js and app.css only, no inline code
 * or style attributes. connect-src 'self': the API and its event stream on
 * the same origin. img-src data: lets the CSS use a data: URI if it ever
 * needs one; nothing else is loaded. */
static const char ui_csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
                             "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                             "form-action 'none'; frame-ancestors 'none'";

static const char ui_not_found[] = "404 Not Found\n";

static const struct {
	const char *ext, *type;
} ui_types[] = {
	{ ".html", "text/html; charset=utf-8" },
	{ ".js", "text/javascript; charset=utf-8" },
	{ ".css", "text/css; charset=utf-8" },
};

bool ui_path_matches(const char *path)
{
	size_t n = strlen(UI_PREFIX);

	return path && strncmp(path, UI_PREFIX, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static const char *ui_type(const char *name)
{
	const char *dot = strrchr(name, '.');

	if (dot)
		for (size_t i = 0; i < RB_ARRAY_SIZE(ui_types); i++)
			if (strcmp(dot, ui_types[i].ext) == 0)
				return ui_types[i].type;
	return "application/octet-stream";
}

static const struct rb_embedded_file *ui_find(const char *name)
{
	for (const struct rb_embedded_file *f = rb_ui_files; f->name; f++)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

/* A strong validator from the content (FNV-1a, 64 bits). Hashing the few
 * tens of KiB per request costs microseconds and keeps this stateless; the
 * page is loaded by people, not by nodes. */
static void ui_etag(const struct rb_embedded_file *f, char buf[static 24])
{
	uint64_t h = UINT64_C(0xcbf29ce484222325);

	for (size_t i = 0; i < f->len; i++) {
		h ^= (unsigned char)f->data[i];
		h *= UINT64_C(0x100000001b3);
	}
	snprintf(buf, 24, "\"%016llx\"", (unsigned long long)h);
}

static void add_header(struct ui_reply *ret, const char *name, const char *value)
{
	if (ret->n_headers < UI_HEADERS_MAX)
		ret->headers[ret->n_headers++] = (struct ui_header){ name, value };
}

void ui_handle(const char *path, const char *if_none_match, struct ui_reply *ret)
{
	const struct rb_embedded_file *f = NULL;
	const char *name = NULL;
	size_t n = strlen(UI_PREFIX);

	memset(ret, 0, sizeof(*ret));
	ret->body = "";
	add_header(ret, "Content-Security-Policy", ui_csp);
	add_header(ret, "X-Content-Type-Options", "nosniff");
	add_header(ret, "Referrer-Policy", "no-referrer");
	add_header(ret, "X-Frame-Options", "DENY");
	if (path[n] == '\0') {
		ret->status = 301;
		add_header(ret, "Location", UI_PREFIX "/");
		add_header(ret, "Cache-Control", "no-cache");
		return;
	}
	name = path + n + 1;
	if (*name == '\0')
		name = "index.html";
	if (!strchr(name, '/'))
		f = ui_find(name);
	if (!f) {
		ret->status = 404;
		ret->body = ui_not_found;
		ret->len = sizeof(ui_not_found) - 1;
		add_header(ret, "Content-Type", "text/plain; charset=utf-8");
		add_header(ret, "Cache-Control", "no-store");
		return;
	}
	ui_etag(f, ret->etag);
	add_header(ret, "ETag", ret->etag);
	add_header(ret, "Cache-Control", "no-cache");
	add_header(ret, "Content-Type", ui_type(f->name));
	if (http_etag_matches(if_none_match, ret->etag)) {
		ret->status = 304;
		return;
	}
	ret->status = 200;
	ret->body = f->data;
	ret->len = f->len;
}
