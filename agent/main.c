/* rackboot-agent: command-line dispatch only; the work lives in the agent
 * library so tests link it. Subcommands come from agent/commands.c. */
#include <stdio.h>
#include <string.h>

#include "agent/commands.h"

static void usage(FILE *o)
{
	fputs("usage: rackboot-agent COMMAND [OPTIONS]\n", o);
	for (const struct agent_command *c = agent_commands; c->name; c++)
		fprintf(o, "  %-10s %s\n", c->name, c->summary);
	fputs("Exit codes: 0 ok, 1 failure, 2 usage.\n", o);
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (const struct agent_command *c = agent_commands; c->name; c++)
		if (!strcmp(argv[1], c->name))
			return c->run(argc - 1, argv + 1);
	fprintf(stderr, "rackboot-agent: unknown command \"%s\"\n", argv[1]);
	usage(stderr);
	return 2;
}
