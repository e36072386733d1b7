// SPDX-License-Identifier: GPL-2.0-only
/*
 * mapinmap_static_v2.bpf.c - fixture: version 2 of mapinmap_static.bpf.c (the same source, its
 * outer map holding inner_v2 and counting into hits[2]), so a new version is loaded.
 */
#define VERSION 2
#include "mapinmap_static.bpf.c"
