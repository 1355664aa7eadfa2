/* Files built into rackbootd at compile time: the default iPXE templates
 * (rb_embedded_files) and the web dashboard (rb_ui_files, pxe/ui.c). */
#pragma once
#include <stddef.h>

struct rb_embedded_file {
	const char *name; /* base name, e.g. "discovery.ipxe"; NULL ends the table */
	const char *data; /* NUL-terminated */
	size_t len;
};

extern const struct rb_embedded_file rb_embedded_files[];

/* The embedded file of that base name, or NULL. */
const struct rb_embedded_file *rb_embedded_find(const char *name);
