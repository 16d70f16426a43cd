/* spinenet: the command-line tool. The table of its commands (one tools/cmd_<name>.c each) and
 * main; errors print "spinenet: error: ..." on one line and exit non-zero (2 for a bad command
 * line). */
#define _GNU_SOURCE /* fopencookie: the "rank R: " prefix of the other processes' stderr */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* Under mpirun every process prints: the lines of ranks other than 0 on stderr start with
 * "rank R: ", so that a message says which process it comes from. */
#if defined(__GLIBC__)
static char g_rank_prefix[32];
static int g_line_start = 1;

static ssize_t prefixed_write(void *cookie, const char *buf, size_t n) {
    (void)cookie;
    size_t done = 0;
    while (done < n) {
        if (g_line_start && write(STDERR_FILENO, g_rank_prefix, strlen(g_rank_prefix)) < 0)
            return -1;
        const char *nl = memchr(buf + done, '\n', n - done);
        const size_t len = nl ? (size_t)(nl - (buf + done)) + 1 : n - done;
        for (size_t w = 0; w < len;) {
            const ssize_t k = write(STDERR_FILENO, buf + done + w, len - w);
            if (k < 0) return -1;
            w += (size_t)k;
        }
        g_line_start = nl != NULL;
        done += len;
    }
    return (ssize_t)n;
}

static void prefix_stderr(int rank) {
    snprintf(g_rank_prefix, sizeof g_rank_prefix, "rank %d: ", rank);
    cookie_io_functions_t io = {NULL, prefixed_write, NULL, NULL};
    FILE *f = fopencookie(NULL, "w", io);
    if (!f) return;
    setvbuf(f, NULL, _IONBF, 0); /* each message written whole, at once */
    stderr = f;
}
#else
static void prefix_stderr(int rank) { (void)rank; }
#endif

static int main_command(int argc, char **argv);

int main(int argc, char **argv) {
    sn_tame_openmp_spinning(argv);
    /* Started by mpirun: join the job (nothing otherwise; harmless for any command). */
    if (sn_dist_init(&argc, &argv) != SN_OK) {
        fprintf(stderr, "spinenet: error: %s\n", sn_last_error());
        return 1;
    }
    if (sn_dist_rank() > 0) prefix_stderr(sn_dist_rank());
    const int rc = main_command(argc, argv);
    fflush(stdout);
    fflush(stderr);
    /* Every process has printed its last words before any exits: mpirun stops the job at the
     * first non-zero exit status, and a process still printing would be cut short. */
    if (sn_dist_size() > 1) sn_dist_barrier();
    sn_dist_finalize();
    return rc;
}

static int main_command(int argc, char **argv) {
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
