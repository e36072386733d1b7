// SPDX-License-Identifier: GPL-2.0-only
/*
 * probe_hooks.bpf.c - fixture for the probe hooks on the VM lab (test_vm_hooks.py): one program per
 * hook, each counting into a map of its own per process (tgid), so that one deployment attaches
 * them all and every hook's count is read apart.
 *
 * kp_getpid (kprobe __x64_sys_getpid)       kprobe_calls[tgid]++
 * krp_getpid (kretprobe __x64_sys_getpid)   kretprobe_calls[tgid]++
 * fe_getpid (fentry __do_sys_getpid)        fentry_calls[tgid]++
 * fx_getpid (fexit __do_sys_getpid)         fexit_calls[tgid]++
 * up_getpid (uprobe libc getpid)            uprobe_calls[tgid]++
 * urp_getpid (uretprobe libc getpid)        uretprobe_calls[tgid]++
 * lsm_open (lsm file_open)                  lsm_opens[tgid]++
 */
#include "tgid_counts.h"

#define LIBC "/usr/lib/x86_64-linux-gnu/libc.so.6"

COUNTS(kprobe_calls);
COUNTS(kretprobe_calls);
COUNTS(fentry_calls);
COUNTS(fexit_calls);
COUNTS(uprobe_calls);
COUNTS(uretprobe_calls);
COUNTS(lsm_opens);

SEC("kprobe/__x64_sys_getpid")
int kp_getpid(void *ctx)
{
	return bump(&kprobe_calls);
}

SEC("kretprobe/__x64_sys_getpid")
int krp_getpid(void *ctx)
{
	return bump(&kretprobe_calls);
}

SEC("fentry/__do_sys_getpid")
int fe_getpid(void *ctx)
{
	return bump(&fentry_calls);
}

SEC("fexit/__do_sys_getpid")
int fx_getpid(void *ctx)
{
	return bump(&fexit_calls);
}

SEC("uprobe/" LIBC ":getpid")
int up_getpid(void *ctx)
{
	return bump(&uprobe_calls);
}

SEC("uretprobe/" LIBC ":getpid")
int urp_getpid(void *ctx)
{
	return bump(&uretprobe_calls);
}

SEC("lsm/file_open")
int lsm_open(void *ctx)
{
	return bump(&lsm_opens);
}

char LICENSE[] SEC("license") = "GPL";
