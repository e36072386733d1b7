// SPDX-License-Identifier: GPL-2.0-only
/*
 * tailcall_static_v2.bpf.c - fixture: version 2 of tailcall_static.bpf.c (the same source, its
 * callee counting into hits[2]), so the object digest differs and a new version is loaded.
 */
#define VERSION 2
#include "tailcall_static.bpf.c"
