/* The command line's machinery over the commands' descriptors: parsing a command's flags into
 * its options struct, its --help, the overview and the did-you-mean errors. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Every command's last flag; main answers it before any parsing, so it has no field. */
static const cli_flag k_help = {"-h, --help", NULL, CLI_HELP, 0, 0, 0, "print this help", NULL};

/* The i-th flag of c in the order of its help (its table, then -h, --help); NULL past them. */
static const cli_flag *flag_of(const cli_command *c, int i) {
    return i < c->n_flags ? &c->flags[i] : i == c->n_flags ? &k_help : NULL;
}

/* The i-th spelling of a flag ("-o, --out, --output" has three) into buf; 0 when none. */
static int spelling(const char *names, int i, char *buf, size_t n) {
    const char *p = names;
    for (; i > 0; i--) {
        p = strstr(p, ", ");
        if (!p) return 0;
        p += 2;
    }
    size_t len = strcspn(p, ",");
    if (len >= n) len = n - 1;
    memcpy(buf, p, len);
    buf[len] = 0;
    return 1;
}

static int flag_is(const cli_flag *f, const char *arg) {
    char s[32];
    for (int i = 0; spelling(f->names, i, s, sizeof s); i++)
        if (strcmp(s, arg) == 0) return 1;
    return 0;
}

/* c's entry of `arg`, or NULL. */
static const cli_flag *find_flag(const char *arg, const cli_command *c) {
    const cli_flag *f;
    for (int i = 0; (f = flag_of(c, i)); i++)
        if (flag_is(f, arg)) return f;
    return NULL;
}

static int any_command_takes(const char *arg) {
    for (int c = 0; c < cli_n_commands; c++)
        if (find_flag(arg, cli_commands[c])) return 1;
    return 0;
}

static int edit_distance(const char *a, const char *b) {
    int prev[64], cur[64];
    const int n = (int)strlen(a), m = (int)strlen(b);
    if (n >= 63 || m >= 63) return 99;
    for (int j = 0; j <= m; j++) prev[j] = j;
    for (int i = 1; i <= n; i++) {
        cur[0] = i;
        for (int j = 1; j <= m; j++) {
            int d = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < d) d = prev[j] + 1;
            if (cur[j - 1] + 1 < d) d = cur[j - 1] + 1;
            cur[j] = d;
        }
        memcpy(prev, cur, sizeof(int) * (size_t)(m + 1));
    }
    return prev[m];
}

/* The command's flag closest to a mistyped one: at most 2 edits (and fewer than half its
 * length), else one that it starts or ends up a prefix of ("--batchsize", "--eval"); "" if
 * none. */
static void suggest(const char *arg, const cli_command *c, char *out, size_t n) {
    int best = 3;
    out[0] = 0;
    for (int pass = 0; pass < 2 && !out[0]; pass++) {
        const cli_flag *f;
        for (int i = 0; (f = flag_of(c, i)); i++) {
            char s[32];
            for (int k = 0; spelling(f->names, k, s, sizeof s); k++) {
                const size_t ls = strlen(s), la = strlen(arg);
                int d = pass == 0 ? edit_distance(arg, s) : 0;
                if (pass == 0 ? d < best && 2 * d < (int)ls
                              : !out[0] && ls >= 4 && la >= 4 &&
                                    strncmp(arg, s, la < ls ? la : ls) == 0) {
                    best = d;
                    snprintf(out, n, "%s", s);
                }
            }
        }
    }
}

const cli_command *cli_find_command(const char *name) {
    for (int c = 0; c < cli_n_commands; c++)
        if (strcmp(cli_commands[c]->name, name) == 0) return cli_commands[c];
    return NULL;
}

int cli_unknown_command(const char *name) {
    int near = -1, best = 3;
    char names[256] = "";
    for (int k = 0; k < cli_n_commands; k++) {
        int d = edit_distance(name, cli_commands[k]->name);
        if (d < best) best = d, near = k;
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s, ",
                 cli_commands[k]->name);
    }
    /* names: every command's, each followed by ", " */
    fprintf(stderr, "spinenet: error: unknown command '%s'%s%s%s (%sversion; see spinenet "
            "--help)\n", name, near >= 0 ? "; did you mean " : "",
            near >= 0 ? cli_commands[near]->name : "", near >= 0 ? "?" : "", names);
    return 2;
}

static int parse_int(const char *flag, const char *v, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "spinenet: error: %s needs an integer in %d..%d, got '%s'\n", flag, lo, hi,
                v ? v : "(nothing)");
        return -1;
    }
    *out = (int)x;
    return 0;
}

/* Stores the value v of flag a (entry f); returns the arguments it used (0 or 1), -1 on error. */
static int set_flag(const cli_flag *f, const char *a, const char *v, void *o) {
    char *field = (char *)o + f->field;
    switch (f->kind) {
    case CLI_STR:
        if (!v) return die("%s needs a value", a), -1;
        *(const char **)field = v;
        return 1;
    case CLI_INT:
        return parse_int(a, v, (int)f->lo, (int)f->hi, (int *)field) ? -1 : 1;
    case CLI_NUM: {
        char *end;
        double x = v ? strtod(v, &end) : 0;
        if (!v || end == v || *end || !(x >= f->lo && x <= f->hi)) {
            fprintf(stderr, "spinenet: error: %s needs a number in %g..%g, got '%s'\n", a, f->lo,
                    f->hi, v ? v : "(nothing)");
            return -1;
        }
        *(double *)field = x;
        return 1;
    }
    case CLI_SEED: {
        char *end;
        if (!v) return die("%s needs a value", a), -1;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (errno || end == v || *end)
            return die("--seed needs a non-negative integer, got '%s'", v), -1;
        *(uint64_t *)field = s;
        return 1;
    }
    case CLI_SWITCH:
        *(int *)field = 1;
        return 0;
    case CLI_HELP:
        return 0;
    }
    return -1;
}

/* The fields of the flags the last cli_parse met (a flag met twice is listed twice). */
static size_t g_given[256];
static int g_n_given;

int cli_flag_given(size_t field) {
    for (int i = 0; i < g_n_given; i++)
        if (g_given[i] == field) return 1;
    return 0;
}

int cli_parse(const cli_command *c, int argc, char **argv, void *opts, const char **args,
              int *n_args) {
    memcpy(opts, c->defaults, c->opts_size);
    *n_args = 0;
    g_n_given = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            args[(*n_args)++] = a; /* image files (classify, detect), the CSV (plot)... */
            continue;
        }
        /* --flag=value is --flag value (as most tools take it); the name is looked up alone. */
        char name[64];
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        if (eq && (size_t)(eq - a) < sizeof name) {
            memcpy(name, a, (size_t)(eq - a));
            name[eq - a] = 0;
            a = name;
        }
        const cli_flag *f = find_flag(a, c);
        if (f && g_n_given < (int)(sizeof g_given / sizeof g_given[0]))
            g_given[g_n_given++] = f->field;
        if (!f) {
            char near[32];
            suggest(a, c, near, sizeof near);
            if (any_command_takes(a))
                fprintf(stderr, "spinenet: error: %s does not take %s (see spinenet %s --help)\n",
                        c->name, a, c->name);
            else if (near[0])
                fprintf(stderr, "spinenet: error: unknown option '%s' for %s; did you mean %s? "
                        "(see spinenet %s --help)\n", a, c->name, near, c->name);
            else
                fprintf(stderr, "spinenet: error: unknown option '%s' for %s (see spinenet %s "
                        "--help)\n", a, c->name, c->name);
            return -1;
        }
        if (eq && a == name) {
            if (!f->arg) {
                fprintf(stderr, "spinenet: error: %s takes no value, got '%s'\n", a, argv[i]);
                return -1;
            }
            if (set_flag(f, a, eq + 1, opts) < 0) return -1;
            continue;
        }
        int used = set_flag(f, a, i + 1 < argc ? argv[i + 1] : NULL, opts);
        if (used < 0) return -1;
        i += used;
    }
    return 0;
}

/* ---- Help ------------------------------------------------------------------------------------ */

#define HELP_WIDTH 100

/* Prints text word by word from column col, wrapping before HELP_WIDTH to column indent. */
static void print_wrapped(FILE *f, const char *text, int col, int indent) {
    int first = 1;
    for (const char *p = text; *p;) {
        while (*p == ' ') p++;
        const int n = (int)strcspn(p, " ");
        if (!n) break;
        if (!first && col + 1 + n >= HELP_WIDTH) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (!first) {
            fputc(' ', f);
            col++;
        }
        fprintf(f, "%.*s", n, p);
        col += n;
        p += n;
        first = 0;
    }
    fputc('\n', f);
}

/* Lines of text, each prefixed (the first with first, the others with rest). */
static void print_lines(const char *text, const char *first, const char *rest) {
    for (const char *p = text; *p;) {
        const int n = (int)strcspn(p, "\n");
        printf("%s%.*s\n", p == text ? first : rest, n, p);
        p += n;
        if (*p) p++;
    }
}

/* One flag's lines; defaults: the command's options before any flag. */
static void print_flag(const cli_flag *f, const void *defaults) {
    const char *field = (const char *)defaults + f->field;
    char left[64], def[64], text[512];
    snprintf(left, sizeof left, "  %s%s%s", f->names, f->arg ? " " : "", f->arg ? f->arg : "");
    const char *dv = f->def;
    if (!dv) {
        switch (f->kind) {
        case CLI_INT: snprintf(def, sizeof def, "%d", *(const int *)field); break;
        case CLI_NUM: snprintf(def, sizeof def, "%g", *(const double *)field); break;
        case CLI_SEED:
            snprintf(def, sizeof def, "%llu", (unsigned long long)*(const uint64_t *)field);
            break;
        case CLI_STR: {
            const char *v = *(const char *const *)field;
            snprintf(def, sizeof def, "%s", v ? v : "none");
            break;
        }
        default: def[0] = 0; break;
        }
        dv = def;
    }
    if (f->kind == CLI_HELP)
        snprintf(text, sizeof text, "%s", f->help);
    else if (strncmp(dv, "required", 8) == 0)
        snprintf(text, sizeof text, "%s (%s)", f->help, dv);
    else
        snprintf(text, sizeof text, "%s (default: %s)", f->help, dv);
    const int col = 25;
    printf("%s", left);
    if ((int)strlen(left) >= col - 1)
        printf("\n%*s", col, "");
    else
        printf("%*s", col - (int)strlen(left), "");
    print_wrapped(stdout, text, col, col);
}

void cli_command_help(const cli_command *c) {
    print_lines(c->usage, "usage: ", "       ");
    printf("\n");
    print_wrapped(stdout, c->about, 0, 0);
    printf("\nflags:\n");
    const cli_flag *f;
    for (int i = 0; (f = flag_of(c, i)); i++) print_flag(f, c->defaults);
    printf("\nexamples:\n");
    print_lines(c->examples, "  ", "  ");
}

/* The overview's common flags: a gist each; the commands that take them come from their
 * tables. */
static const struct {
    const char *name, *arg, *gist;
} k_common[] = {
    {"--model", "NAME", "the SpineNet variant (default: spinenet-49)"},
    {"--weights", "FILE", "a model written by spinenet init or train (safetensors)"},
    {"--size", "S", "input size in pixels"},
    {"--threads", "T", "threads (default: 1; 0: all cores)"},
    {"--seed", "N", "seed of everything random"},
    {"-o", "PATH", "where the output goes (also --out, --output)"},
    {"--json", NULL, "one JSON object instead of text"},
};

void cli_overview(FILE *f) {
    fprintf(f, "usage: spinenet COMMAND [flags]\n\ncommands:\n");
    int w = (int)strlen("help COMMAND") + 2; /* the name column: the longest name and 2 spaces */
    for (int c = 0; c < cli_n_commands; c++)
        if ((int)strlen(cli_commands[c]->name) + 2 > w) w = (int)strlen(cli_commands[c]->name) + 2;
    for (int c = 0; c < cli_n_commands; c++) {
        fprintf(f, "  %-*s", w, cli_commands[c]->name);
        print_wrapped(f, cli_commands[c]->summary, w + 2, w + 2);
    }
    fprintf(f, "  %-*s%s\n  %-*s%s\n", w, "version", "print the version and the kernels' build", w,
            "help COMMAND", "the same as spinenet COMMAND --help");
    fprintf(f, "\ncommon flags (each command's --help lists all of its flags and their "
               "defaults):\n");
    for (size_t i = 0; i < sizeof k_common / sizeof k_common[0]; i++) {
        char left[40], cmds[128] = "";
        snprintf(left, sizeof left, "%s%s%s", k_common[i].name, k_common[i].arg ? " " : "",
                 k_common[i].arg ? k_common[i].arg : "");
        for (int c = 0; c < cli_n_commands; c++)
            if (find_flag(k_common[i].name, cli_commands[c]))
                snprintf(cmds + strlen(cmds), sizeof cmds - strlen(cmds), "%s%s", cmds[0] ? " " : "",
                         cli_commands[c]->name);
        char text[256];
        snprintf(text, sizeof text, "%s [%s]", k_common[i].gist, cmds);
        fprintf(f, "  %-16s", left);
        print_wrapped(f, text, 18, 18);
    }
    fprintf(f, "  %-16s%s\n", "-h, --help", "this overview; after a command, that command's help");
    fprintf(f, "\nspinenet COMMAND --help for its flags, e.g. spinenet train --help\n");
}
