// SPDX-License-Identifier: GPL-2.0
/*
 * tc_classifier.bpf.c - fixture: a valid program that is not XDP.
 *
 * A tc (SCHED_CLS) program that lets everything through. Used to test that
 * XDP-only operations refuse it with a clear "not an XDP program" error.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int tc_pass(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
