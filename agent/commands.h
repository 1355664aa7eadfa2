/* The agent's subcommands: one table, filled in agent/commands.c. */
#pragma once

struct agent_command {
	const char *name;                  /* NULL ends the table */
	const char *summary;               /* one line for --help */
	int (*run)(int argc, char **argv); /* argv[0] is the command name; returns the exit code */
};

extern const struct agent_command agent_commands[];
