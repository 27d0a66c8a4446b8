#!/bin/sh
# The counters of every systemd service of this server, for benchbed's sampler
# (benchbed/tasks/sampler.py), in ONE process whatever the number of services: one `grep`
# over each service's CPU and memory files under SLICE, in every cgroup layout (v2, hybrid,
# v1). Each line is FILE:LINE, FILE relative to ROOT (the cgroup mount); the sampler parses
# them as it parses the files it reads itself for local containers. A service that goes away
# meanwhile is left out (grep -s); `end` comes last, so a cut-off answer is told from a
# complete one.
# Usage: sample.sh ROOT SLICE   (e.g. /sys/fs/cgroup system.slice)
set -u
root=$1
slice=$2
cd "$root" || exit 3
grep -s -H -E '^(usage_usec|anon|total_rss) [0-9]+$|^[0-9]+$' -- \
  "$slice"/*.service/cpu.stat "$slice"/*.slice/*.service/cpu.stat \
  "$slice"/*.service/memory.stat "$slice"/*.slice/*.service/memory.stat \
  unified/"$slice"/*.service/cpu.stat unified/"$slice"/*.slice/*.service/cpu.stat \
  memory/"$slice"/*.service/memory.stat memory/"$slice"/*.slice/*.service/memory.stat \
  cpuacct/"$slice"/*.service/cpuacct.usage cpuacct/"$slice"/*.slice/*.service/cpuacct.usage
echo end
