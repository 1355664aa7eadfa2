/* The JSON API under /api/v1/, independent of the HTTP library: http.c
 * passes the method and decoded path and sends back what this returns. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

struct registry;

struct api_reply {
	unsigned status; /* HTTP status code */
	char *body;      /* JSON document, malloc'ed, owned by the caller */
	size_t len;
};

/* True if path belongs to the API (starts with "/api/"). */
bool api_path_matches(const char *path);
/* Answers method on path (e.g. "GET", "/api/v1/nodes/52:54:00:12:34:56").
 * Errors are answered too, as {"error": "...", "status": N}. Returns 0 with
 * *ret filled, or -ENOMEM (then nothing is allocated). */
int api_handle(struct registry *reg, const char *method, const char *path, struct api_reply *ret);
