/* Shared state of the rackboot CLI's commands (cli/main.c, cli/follow.c). */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cli/client.h"

struct cli {
	struct client c;
	bool json;  /* --json: the server's JSON, for scripts */
	bool tty;   /* stdout is a terminal: live redraws */
	bool quiet; /* no advice on stderr */
};

/* Prints "rackboot: <msg>" to stderr and returns code. */
int cli_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints the node list (the "nodes" array of GET /api/v1/nodes) as a
 * table, now being the current time (unix seconds). */
void cli_print_nodes(FILE *out, json_t *nodes, int64_t now);
/* "[#####-----]  50% write 1.0 GiB/2.0 GiB 250.0 MiB/s" for a progress
 * object (an empty string for null). */
char *cli_progress_text(json_t *progress, unsigned width, char *buf, size_t len);
/* True for the states in which the agent works on the disk. */
bool cli_state_busy(const char *state);

/* rackboot events [-f] [--since ID]. */
int cli_events(struct cli *cli, bool follow, int64_t since);
/* rackboot node ls --watch: the list, redrawn as events arrive. */
int cli_watch_nodes(struct cli *cli, const char *query);
