/*
 * A QEMU TCG plugin (qemu-user 7.2, plugin API version 1) that counts the guest instructions executed
 * between marker system calls, for `make arm-check`'s per-stage instruction counts.
 *
 * The guest marks a stage boundary with getpgid(MARKER_BASE + k) (Python: os.getpgid, which fails with
 * ESRCH); at each marker the plugin appends "k count" to the output file, count being the instructions
 * executed since the previous marker. Counting is per translated block, added inline when the block
 * starts (as QEMU's own contrib "insn" plugin does in inline mode): exact for straight-line code, and off
 * by at most the rest of a block for the rare block left early by an exception.
 *
 * Written against the documented plugin API; the few declarations needed are below, so that no QEMU
 * header is required. Build: gcc -shared -fPIC -O2 -o libinsn_count.so insn_count.c
 * Run:   qemu-aarch64 -cpu cortex-a72 -plugin ./libinsn_count.so,out=counts.txt PROGRAM ...
 * Single-threaded guests only (the counter is not atomic): run the stages with one thread.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
                                           void (*cb)(qemu_plugin_id_t, struct qemu_plugin_tb *));
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr,
                                              uint64_t imm);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id,
                                          void (*cb)(qemu_plugin_id_t, unsigned int, int64_t, uint64_t,
                                                     uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                                                     uint64_t, uint64_t));
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, void (*cb)(qemu_plugin_id_t, void *), void *userdata);

#define EXPORT __attribute__((visibility("default")))
#define SYS_GETPGID_AARCH64 155
#define MARKER_BASE 0x7e570000u
#define MARKER_SPAN 0x10000u

EXPORT int qemu_plugin_version = 1;

static uint64_t insns;
static uint64_t last;
static FILE *out;

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns, qemu_plugin_tb_n_insns(tb));
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    (void)id; (void)vcpu; (void)a2; (void)a3; (void)a4; (void)a5; (void)a6; (void)a7; (void)a8;
    if (num != SYS_GETPGID_AARCH64 || a1 < MARKER_BASE || a1 >= MARKER_BASE + MARKER_SPAN) {
        return;
    }
    uint64_t now = insns;
    fprintf(out, "%" PRIu64 " %" PRIu64 "\n", a1 - MARKER_BASE, now - last);
    fflush(out);
    last = now;
}

static void at_exit(qemu_plugin_id_t id, void *p)
{
    (void)id; (void)p;
    fprintf(out, "total %" PRIu64 "\n", insns);
    fclose(out);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            path = argv[i] + 4;
        }
    }
    out = path ? fopen(path, "w") : stderr;
    if (!out) {
        fprintf(stderr, "insn_count: cannot open %s\n", path);
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
