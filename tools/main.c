/* spinenet: the command-line tool. The table of its commands (one tools/cmd_<name>.c each) and
 * main; errors print "spinenet: error: ..." on one line and exit non-zero (2 for a bad command
 * line). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core.h"
#include "dist.h"
#include "kernels.h"

/* The commands in the overview's order: adding one is its file and a line here. */
#define COMMANDS(X)                                                                            \
    X(cmd_info)                                                                                \
    X(cmd_init)                                                                                \
    X(cmd_bench)                                                                               \
    X(cmd_train)                                                                               \
    X(cmd_eval)                                                                                \
    X(cmd_classify)                                                                            \
    X(cmd_detect)                                                                              \
    X(cmd_make_dataset)                                                                        \
    X(cmd_plot)                                                                                \
    X(cmd_inspect_checkpoint)                                                                  \
    X(cmd_convert)                                                                             \
    X(cmd_export)

#define DECLARE(c) extern const cli_command c;
COMMANDS(DECLARE)
#define ROW(c) &c,
const cli_command *const cli_commands[] = {COMMANDS(ROW)};
const int cli_n_commands = (int)(sizeof cli_commands / sizeof cli_commands[0]);

static int is_choice(const char *const *choices, const char *arg) {
    for (; choices && *choices; choices++)
        if (strcmp(*choices, arg) == 0) return 1;
    return !choices;
}

/* The command's rule for the arguments that are not flags; 1 after the error. */
static int check_positionals(const cli_command *c, const char *const *args, int n) {
    const char *extra = NULL;
    switch (c->positional) {
    case CLI_POS_NONE: extra = n > 0 ? args[0] : NULL; break;
    case CLI_POS_ONE:
        if (n == 0 || !is_choice(c->pos_choices, args[0])) return die("%s", c->pos_missing);
        extra = n > 1 ? args[1] : NULL;
        break;
    case CLI_POS_LIST: break;
    }
    if (extra)
        fprintf(stderr, "spinenet: error: unexpected argument '%s' (see spinenet %s --help)\n",
                extra, c->name);
    return extra != NULL;
}

static int run_command(const cli_command *c, int argc, char **argv) {
    void *o = malloc(c->opts_size);
    const char **args = calloc((size_t)argc, sizeof *args);
    int n_args = 0, rc;
    if (!o || !args) {
        die("%s", "out of memory");
        rc = 2;
    } else if (cli_parse(c, argc, argv, o, args, &n_args)) {
        rc = 2;
    } else if (check_positionals(c, args, n_args)) {
        rc = 2;
    } else {
        rc = c->run(o, args, n_args);
    }
    free(o);
    free(args);
    return rc;
}

int main(int argc, char **argv) {
    sn_tame_openmp_spinning(argv);
    if (argc < 2) {
        cli_overview(stderr);
        return 2;
    }
    /* spinenet help COMMAND is spinenet COMMAND --help. */
    const int help = strcmp(argv[1], "help") == 0;
    const char *name = help && argc > 2 ? argv[2] : argv[1];
    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "help") == 0) {
        cli_overview(stdout);
        return 0;
    }
    if (strcmp(name, "version") == 0 || strcmp(name, "--version") == 0) {
        /* The builds SN_ISA names, from the kernels' ISA list ("generic|avx2|avx512"). */
        char isas[256] = "";
        for (int i = 0; i < SN_ISA_COUNT; i++)
            snprintf(isas + strlen(isas), sizeof isas - strlen(isas), "%s%s", i ? "|" : "",
                     sn_isa_name((sn_isa)i));
        if (help) {
            printf("usage: spinenet version\n\nPrints the version, the kernels' build in use "
                   "(SN_ISA=%s picks one) and the MPI library built in, if any.\n", isas);
        } else {
            printf("spinenet %s (kernels: %s; SN_ISA=%s picks a build)\n", SN_VERSION_STRING,
                   sn_isa_name(sn_isa_active()), isas);
            /* Training over processes (mpirun): whether built with MPI, and which one. */
            printf("MPI: %s\n", sn_dist_compiled() ? sn_dist_library() : "no (one process)");
        }
        return 0;
    }
    const cli_command *c = cli_find_command(name);
    if (!c) return cli_unknown_command(name);
    int want_help = help;
    for (int i = 2; i < argc && !want_help; i++)
        want_help = strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0;
    if (want_help) {
        cli_command_help(c);
        return 0;
    }
    return run_command(c, argc, argv);
}
