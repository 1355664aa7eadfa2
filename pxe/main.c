/* rackbootd: command line, config loading, then rb_server_run(); or the
 * "token" commands that manage the operator tokens file of that config. */
#include "common/log.h"
#include "common/optoken.h"
#include "pxe/config.h"
#include "pxe/server.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *o)
{
	fputs("Usage: rackbootd [OPTIONS]\n"
	      "       rackbootd [-c FILE] [--state-dir DIR] token create|revoke NAME\n"
	      "       rackbootd [-c FILE] [--state-dir DIR] token ls\n"
	      "Network-boot server: proxyDHCP/DHCP, TFTP, HTTP (iPXE scripts, files, API).\n"
	      "\"token create\" adds an operator token to the config's api.tokens_file\n"
	      "(default <state_dir>/tokens) and prints it once; the server picks it up\n"
	      "without a restart.\n\n"
	      "  -c, --config FILE        read FILE (libconfuse syntax, see "
	      "templates/rackbootd.conf);\n"
	      "                           without it the embedded defaults are used\n"
	      "      --check-config       validate, print the effective config and exit\n"
	      "  -i, --interface IFACE    provisioning interface (address taken from it)\n"
	      "      --server-address IP  address nodes reach this server at\n"
	      "      --dhcp MODE          proxy (default), full or off\n"
	      "      --root DIR           serve DIR/tftp, DIR/boot, DIR/repo\n"
	      "      --state-dir DIR      registry and leases (default /var/lib/rackboot)\n"
	      "      --http-port PORT     HTTP port (default 8080)\n"
	      "      --user USER          drop privileges to USER (\"\" = stay)\n"
	      "  -v, --verbose            debug logging\n"
	      "  -h, --help               this text\n"
	      "      --version            print the version\n",
	      o);
}

/* rackbootd token create|revoke NAME, token ls. Exit 0, 1 (refused), 2 (usage). */
static int token_command(const struct rb_config *cfg, int argc, char **argv)
{
	char err[600], token[RB_OPTOKEN_LEN + 1];
	const char *cmd = argc > 1 ? argv[1] : "";
	int r;

	if (!strcmp(cmd, "ls") && argc == 2) {
		struct rb_optokens *set = NULL;

		r = rb_optokens_load(cfg->api_tokens_file, &set, err, sizeof(err));
		if (r == -ENOENT) {
			fprintf(stderr,
			        "rackbootd: no tokens yet (%s does not exist); make one "
			        "with: rackbootd token create NAME\n",
			        cfg->api_tokens_file);
			return 0;
		}
		if (r < 0) {
			fprintf(stderr, "rackbootd: %s\n", err);
			return 1;
		}
		for (size_t i = 0; i < rb_optokens_count(set); i++)
			puts(rb_optokens_name(set, i));
		rb_optokens_free(set);
		return 0;
	}
	if (argc != 3 || (strcmp(cmd, "create") && strcmp(cmd, "revoke"))) {
		fprintf(stderr,
		        "usage: rackbootd [-c FILE] token create NAME | token revoke NAME | "
		        "token ls\n");
		return 2;
	}
	if (!strcmp(cmd, "revoke")) {
		r = rb_optoken_revoke(cfg->api_tokens_file, argv[2], err, sizeof(err));
		if (r < 0) {
			fprintf(stderr, "rackbootd: %s\n", err);
			return 1;
		}
		fprintf(stderr, "revoked token \"%s\" (%s)\n", argv[2], cfg->api_tokens_file);
		return 0;
	}
	r = rb_optoken_create(cfg->api_tokens_file, argv[2], token, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "rackbootd: %s\n", err);
		return r == -EINVAL && !rb_optoken_name_ok(argv[2]) ? 2 : 1;
	}
	/* The token on stdout alone (scripts capture it), the advice on stderr. */
	puts(token);
	explicit_bzero(token, sizeof(token));
	fprintf(stderr,
	        "operator token \"%s\" added to %s; it is shown only now. Use it as\n"
	        "  export RACKBOOT_TOKEN=<token>   (rackboot CLI), or\n"
	        "  curl -H \"Authorization: Bearer <token>\" ...\n",
	        argv[2], cfg->api_tokens_file);
	return 0;
}

int main(int argc, char **argv)
{
	enum { O_CHECK = 256, O_SERVER, O_DHCP, O_ROOT, O_STATE, O_HTTP, O_USER, O_VERSION };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, O_CHECK },
		{ "interface", required_argument, NULL, 'i' },
		{ "server-address", required_argument, NULL, O_SERVER },
		{ "dhcp", required_argument, NULL, O_DHCP },
		{ "root", required_argument, NULL, O_ROOT },
		{ "state-dir", required_argument, NULL, O_STATE },
		{ "http-port", required_argument, NULL, O_HTTP },
		{ "user", required_argument, NULL, O_USER },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, O_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	struct rb_config_overrides ovr = { 0 };
	struct rb_config *cfg;
	const char *path = NULL;
	int check = 0, verbose = 0, c, r;

	while ((c = getopt_long(argc, argv, "c:i:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case O_CHECK:
			check = 1;
			break;
		case 'i':
			ovr.interface = optarg;
			break;
		case O_SERVER:
			ovr.server_addr = optarg;
			break;
		case O_DHCP:
			ovr.dhcp_mode = optarg;
			break;
		case O_ROOT:
			ovr.root = optarg;
			break;
		case O_STATE:
			ovr.state_dir = optarg;
			break;
		case O_HTTP:
			ovr.http_port = optarg;
			break;
		case O_USER:
			ovr.user = optarg;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case O_VERSION:
			puts("rackbootd " RB_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc && strcmp(argv[optind], "token") != 0) {
		fprintf(stderr, "rackbootd: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	r = rb_config_load(path, &ovr, stderr, &cfg);
	if (r < 0) {
		fprintf(stderr, "rackbootd: configuration not valid, not starting\n");
		return 1;
	}
	if (optind < argc) {
		r = token_command(cfg, argc - optind, argv + optind);
		rb_config_free(cfg);
		return r;
	}
	if (check) {
		rb_config_print(cfg, stdout);
		rb_config_free(cfg);
		return 0;
	}
	rb_log_open("rackbootd", false, verbose ? LOG_DEBUG : cfg->log_level);
	r = rb_server_run(cfg);
	rb_config_free(cfg);
	return r < 0 ? 1 : 0;
}
