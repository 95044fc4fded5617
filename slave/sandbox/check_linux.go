package sandbox

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// namespaces lists the namespaces every sandbox gets, by /proc/self/ns name.
var namespaces = []struct{ file, name string }{
	{"user", "user"}, {"pid", "pid"}, {"mnt", "mount"}, {"net", "net"},
	{"ipc", "ipc"}, {"uts", "uts"}, {"cgroup", "cgroup"},
}

// Check reports what a strict sandbox enforces here. It probes the kernel
// and then really starts a sandbox and runs /usr/bin/true in it, so an
// error (wrapping ErrMissing) names the layer that failed. The slave calls
// it at start-up, prints the report and refuses strict mode on error.
func (s *Strict) Check(ctx context.Context) (Capabilities, error) {
	c := Capabilities{Cgroup: s.cg.version, Controllers: s.cg.controllers(), Missing: s.cg.missing}
	for _, ns := range namespaces {
		if _, err := os.Stat("/proc/self/ns/" + ns.file); err != nil {
			return c, fmt.Errorf("%w: %s namespace (%v)", ErrMissing, ns.name, err)
		}
		c.Namespaces = append(c.Namespaces, ns.name)
	}
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil {
		if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n == 0 {
			return c, fmt.Errorf("%w: user namespaces are disabled (user.max_user_namespaces = 0)", ErrMissing)
		}
	}
	dir, err := os.MkdirTemp("", "kiln-check-")
	if err != nil {
		return c, err
	}
	defer os.RemoveAll(dir)
	out, filtered, err := s.run(ctx, Spec{Argv: []string{"/usr/bin/true"}, Dir: dir, Limits: Limits{Wall: readyTimeout}})
	if err != nil {
		return c, fmt.Errorf("%w: starting a sandbox failed: %v", ErrMissing, err)
	}
	if out.ExitCode != 0 {
		return c, fmt.Errorf("%w: /usr/bin/true failed in the sandbox: %+v", ErrMissing, out)
	}
	if !filtered {
		return c, fmt.Errorf("%w: the job ran without the syscall filter", ErrMissing)
	}
	c.Filter = filterSummary()
	c.Features = []string{"uid " + strconv.Itoa(s.cfg.HostIDBase+1) + "+ (no capabilities, no_new_privs)",
		"pivot_root into read-only binds", "tmpfs /w and /tmp", "loopback down",
		"rlimits cpu,fsize,nofile,nproc,core,stack", "warm pool " + strconv.Itoa(max(s.cfg.MaxIdle, 0))}
	if s.cg.memory == "" {
		c.Features = append(c.Features, "memory by RLIMIT_AS (Java needs generous limits)")
	} else {
		c.Features = append(c.Features, "init outside the job's memory cgroup")
	}
	if j := s.join.Load(); j != nil {
		switch j[0] {
		case "thread":
			c.Features = append(c.Features, "jobs born in their v1 cgroups")
		case "pid":
			c.Missing = append(c.Missing, "jobs moved into their v1 cgroups by pid, a start may wait ~10 ms ("+j[1]+")")
		}
	}
	if !s.oomExempt.Load() {
		c.Missing = append(c.Missing, "init not exempt from the host's OOM killer (oom_score_adj -1000 needs CAP_SYS_RESOURCE)")
	}
	c.Features = append(c.Features, "/proc hidepid=2")
	return c, nil
}
