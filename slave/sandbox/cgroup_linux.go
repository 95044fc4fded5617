package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Cgroups. Each sandbox slot owns one cgroup per controller under
// <own cgroup>/kiln-<pid>/slot-<init's host uid> (unique even with two
// runners in one process), created with the slot and removed with it. The
// init is never in the job's group while the job runs, and its thread
// group leader never, so that the group's OOM killer can only pick one of
// the job's processes (the init, bigger than a job whose memory sits in
// tmpfs pages, used to be its pick). On v2 the job is cloned straight into
// <slot>/job (CLONE_INTO_CGROUP) while the init lives in <slot>/init. On
// v1 the init's fork thread joins the slot's groups itself just around the
// launcher's fork, so that the launcher and the job are born there, and
// goes back at once, writing "0" to "tasks" files the host opened and the
// init keeps: the slot's, then those of the init's own groups (see
// start_linux.go). A thread that moves itself needs no global lock, where
// moving another process waited for an RCU grace period. Where the init
// cannot do that, it moves the job's first process by its pid instead.

// cgroups is the host's view of the usable hierarchies.
type cgroups struct {
	version string // "v1", "v2" or ""
	memory  string // v1: memory hierarchy dir for our groups; v2: our dir
	pids    string // v1: pids hierarchy dir; v2: same as memory
	missing []string
	// noHome (tests) passes the inits no "tasks" files of their own v1
	// groups, which makes them join jobs by pid; homeRO passes them
	// unwritable.
	noHome, homeRO bool
}

// detectCgroups finds where this process may create its groups.
func detectCgroups() *cgroups {
	own, err := ownCgroups()
	if err != nil {
		return &cgroups{missing: []string{"cgroups: " + err.Error()}}
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return &cgroups{missing: []string{"cgroups: " + err.Error()}}
	}
	parent := "kiln-" + strconv.Itoa(os.Getpid())
	c := &cgroups{}
	if m, ok := mounts["memory"]; ok {
		c.version = "v1"
		c.memory = filepath.Join(m, own["memory"], parent)
		if p, ok := mounts["pids"]; ok {
			c.pids = filepath.Join(p, own["pids"], parent)
		} else {
			c.missing = append(c.missing, "cgroup v1 pids controller not mounted (RLIMIT_NPROC only)")
		}
		return c
	}
	if u, ok := mounts[""]; ok {
		dir := filepath.Join(u, own[""])
		ctl, _ := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
		fields := strings.Fields(string(ctl))
		if contains(fields, "memory") && contains(fields, "pids") {
			c.version = "v2"
			c.memory = filepath.Join(dir, parent)
			c.pids = c.memory
			return c
		}
		c.missing = append(c.missing, "cgroup v2 at "+dir+" lacks the memory and pids controllers (delegate them)")
		return c
	}
	c.missing = append(c.missing, "no cgroup memory controller (memory limited by RLIMIT_AS only, no peak from cgroup)")
	return c
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ownCgroups maps controller ("" for v2) to this process's group path.
func ownCgroups() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	own := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, ctl := range strings.Split(f[1], ",") {
			own[ctl] = f[2]
		}
	}
	return own, nil
}

// cgroupMounts maps controller ("" for the v2 hierarchy) to its mount point.
func cgroupMounts() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 || pf[3] != "/" {
			continue
		}
		switch qf[0] {
		case "cgroup2":
			m[""] = pf[4]
		case "cgroup":
			for _, o := range strings.Split(qf[2], ",") {
				if o == "memory" || o == "pids" {
					m[o] = pf[4]
				}
			}
		}
	}
	return m, sc.Err()
}

// controllers lists the controllers in force.
func (c *cgroups) controllers() []string {
	var l []string
	if c.memory != "" {
		l = append(l, "memory")
	}
	if c.pids != "" {
		l = append(l, "pids")
	}
	return l
}

// slotCgroup is the group(s) of one sandbox slot.
type slotCgroup struct {
	v2      bool
	dirs    []string            // created directories, deepest last
	memDir  string              // v1 memory dir or v2 job dir
	pidsDir string              // v1 pids dir or v2 job dir
	pass    []*os.File          // handed to the init (v1 tasks files or v2 job dir), kept by it
	home    []*os.File          // v1: "tasks" of the init's own groups, same order as pass (or none)
	initDir *os.File            // v2: the init's group, for CLONE_INTO_CGROUP
	base    int64               // memory charged before the job started
	ooms    int64               // OOM kills counted before the job started
	files   map[string]*os.File // open control files, by path
	last    [2]int64            // limits in force: memory, procs (0: unset)
	rbuf    []byte              // read's buffer
}

// newSlot creates the groups of slot n; initUID is the init's host uid
// (v2 delegates the job group to it).
func (c *cgroups) newSlot(n, initUID int) (*slotCgroup, error) {
	s := &slotCgroup{v2: c.version == "v2", files: map[string]*os.File{}}
	name := "slot-" + strconv.Itoa(initUID)
	if s.v2 {
		return s, s.makeV2(filepath.Join(c.memory, name), initUID)
	}
	var homes []string
	for _, base := range []string{c.memory, c.pids} {
		if base == "" {
			continue
		}
		dir := filepath.Join(base, name)
		if err := s.mkdir(base, dir); err != nil {
			s.remove()
			return nil, err
		}
		f, err := os.OpenFile(filepath.Join(dir, "tasks"), os.O_WRONLY, 0)
		if err != nil {
			s.remove()
			return nil, err
		}
		s.pass = append(s.pass, f)
		homes = append(homes, filepath.Dir(base))
		if base == c.memory {
			s.memDir = dir
			os.WriteFile(filepath.Join(dir, "memory.swappiness"), []byte("0"), 0)
		} else {
			s.pidsDir = dir
		}
	}
	if !c.noHome {
		s.openHome(homes, c.homeRO)
	}
	return s, nil
}

// openHome opens the "tasks" files of dirs, the init's own groups (this
// process's, where the init is started), for the init's fork thread to go
// back to after each job's fork. Without all of them the init joins jobs
// by pid. readOnly (tests) opens them unwritable.
func (s *slotCgroup) openHome(dirs []string, readOnly bool) {
	flag := os.O_WRONLY
	if readOnly {
		flag = os.O_RDONLY
	}
	for _, d := range dirs {
		f, err := os.OpenFile(filepath.Join(d, "tasks"), flag, 0)
		if err != nil {
			closeFiles(s.home)
			s.home = nil
			return
		}
		s.home = append(s.home, f)
	}
}

func (s *slotCgroup) mkdir(parent, dir string) error {
	if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	s.dirs = append(s.dirs, dir)
	return nil
}

func (s *slotCgroup) makeV2(slot string, initUID int) error {
	parent := filepath.Dir(slot)
	if err := s.mkdir(parent, slot); err != nil {
		return err
	}
	for _, d := range []string{filepath.Dir(parent), parent, slot} {
		if err := os.WriteFile(filepath.Join(d, "cgroup.subtree_control"), []byte("+memory +pids"), 0); err != nil && d == slot {
			s.remove()
			return fmt.Errorf("enable memory,pids under %s: %w", d, err)
		}
	}
	for _, d := range []string{"init", "job"} {
		if err := s.mkdir(slot, filepath.Join(slot, d)); err != nil {
			s.remove()
			return err
		}
	}
	job := filepath.Join(slot, "job")
	for _, p := range []string{slot, job, filepath.Join(slot, "cgroup.procs"), filepath.Join(job, "cgroup.procs")} {
		if err := os.Chown(p, initUID, initUID); err != nil {
			s.remove()
			return err
		}
	}
	s.memDir, s.pidsDir = job, job
	var err error
	if s.initDir, err = os.Open(filepath.Join(slot, "init")); err != nil {
		s.remove()
		return err
	}
	jf, err := os.Open(job)
	if err != nil {
		s.remove()
		return err
	}
	s.pass = []*os.File{jf}
	return nil
}

// closePassed closes the descriptors once the init holds them.
func (s *slotCgroup) closePassed() {
	closeFiles(s.pass)
	closeFiles(s.home)
	s.pass, s.home = nil, nil
	if s.initDir != nil {
		s.initDir.Close()
		s.initDir = nil
	}
}

// limit sets the limits of the next job and notes the baseline.
func (s *slotCgroup) limit(memBytes int64, procs int) error {
	if s.last != [2]int64{memBytes, int64(procs)} {
		if err := s.setLimits(memBytes, procs); err != nil {
			s.last = [2]int64{}
			return err
		}
		s.last = [2]int64{memBytes, int64(procs)}
	}
	if s.memDir == "" {
		return nil
	}
	if s.v2 {
		s.write(s.memDir, "memory.peak", "reset")
		s.base = 0
	} else {
		s.write(s.memDir, "memory.max_usage_in_bytes", "0")
		s.base = s.readInt(s.memDir, "memory.usage_in_bytes")
	}
	s.ooms = s.oomKills()
	return nil
}

// setLimits writes the memory and pids limits.
func (s *slotCgroup) setLimits(memBytes int64, procs int) error {
	if s.memDir != "" {
		lim := "-1"
		if memBytes > 0 {
			lim = strconv.FormatInt(memBytes, 10)
		}
		if s.v2 {
			if lim == "-1" {
				lim = "max"
			}
			if err := s.write(s.memDir, "memory.max", lim); err != nil {
				return err
			}
			s.write(s.memDir, "memory.swap.max", "0")
		} else {
			s.write(s.memDir, "memory.memsw.limit_in_bytes", "-1")
			if err := s.writeLimit(s.memDir, "memory.limit_in_bytes", lim); err != nil {
				return err
			}
			s.write(s.memDir, "memory.memsw.limit_in_bytes", lim)
		}
	}
	if s.pidsDir != "" {
		max := "max"
		if procs > 0 {
			// The launcher is born there and counts until it is reaped,
			// right after its copy starts (on v1 with the init's fork
			// thread, which counts while it forks the launcher). The job
			// alone stays within procs by RLIMIT_NPROC, which counts the
			// same tasks (they all run as the slot's job uid).
			max = strconv.Itoa(procs + 1)
		}
		if err := s.write(s.pidsDir, "pids.max", max); err != nil {
			return err
		}
	}
	return nil
}

// usage reads the job's peak memory and whether the OOM killer struck.
func (s *slotCgroup) usage() (peakKiB int64, oom bool) {
	if s.memDir == "" {
		return 0, false
	}
	var peak int64
	if s.v2 {
		peak = s.readInt(s.memDir, "memory.peak")
	} else {
		peak = s.readInt(s.memDir, "memory.max_usage_in_bytes") - s.base
	}
	return max(peak, 0) / 1024, s.oomKills() > s.ooms
}

func (s *slotCgroup) oomKills() int64 {
	file := "memory.oom_control"
	if s.v2 {
		file = "memory.events"
	}
	b := s.read(s.memDir, file)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// open returns the control file dir/file, kept open for the next jobs.
func (s *slotCgroup) open(dir, file string) (*os.File, error) {
	p := filepath.Join(dir, file)
	if f, ok := s.files[p]; ok {
		return f, nil
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	s.files[p] = f
	return f, nil
}

func (s *slotCgroup) write(dir, file, v string) error {
	f, err := s.open(dir, file)
	if err == nil {
		_, err = f.WriteAt([]byte(v), 0)
	}
	if err != nil {
		return fmt.Errorf("cgroup %s: %w", file, err)
	}
	return nil
}

// leftChargeWait bounds how long a job's memory limit waits for what the
// last job on the slot left charged to its group and the kernel frees in
// its own time.
const leftChargeWait = 2 * time.Second

// writeLimit writes a v1 memory limit. Below the group's usage the kernel
// refuses it (EBUSY) when it cannot reclaim enough at once: pages the last
// job left that go a little after its processes, such as memfds it sent
// into a cycle of unix sockets, which the socket garbage collector frees
// once the init has set it off (collectUnixGarbage). A lower limit for
// another client's next job then failed, an internal_error against the
// slave (TestPooledSlotWaitsForLeftMemory); it is tried again until those
// pages are gone, within leftChargeWait.
func (s *slotCgroup) writeLimit(dir, file, v string) error {
	deadline := time.Now().Add(leftChargeWait)
	for {
		err := s.write(dir, file, v)
		if err == nil || !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// read returns the start of dir/file, in a buffer valid until the next
// read (the slot's runs, one at a time, are its only readers).
func (s *slotCgroup) read(dir, file string) []byte {
	f, err := s.open(dir, file)
	if err != nil {
		return nil
	}
	if s.rbuf == nil {
		s.rbuf = make([]byte, 4096)
	}
	n, _ := f.ReadAt(s.rbuf, 0)
	return s.rbuf[:n]
}

func (s *slotCgroup) readInt(dir, file string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSpace(string(s.read(dir, file))), 10, 64)
	return n
}

// remove deletes the slot's groups once their processes are gone.
func (s *slotCgroup) remove() {
	s.closePassed()
	for p, f := range s.files {
		f.Close()
		delete(s.files, p)
	}
	for i := len(s.dirs) - 1; i >= 0; i-- {
		for try := 0; try < 50; try++ {
			err := unix.Rmdir(s.dirs[i])
			if err != unix.EBUSY {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	s.dirs = nil
}

// sweep removes the empty groups left by kiln processes that died without
// closing their runner (kiln-<pid> whose pid is gone).
func (c *cgroups) sweep() {
	for _, d := range []string{c.memory, c.pids} {
		if d == "" {
			continue
		}
		ents, _ := os.ReadDir(filepath.Dir(d))
		for _, e := range ents {
			pid, ok := strings.CutPrefix(e.Name(), "kiln-")
			if !ok || !e.IsDir() || filepath.Join(filepath.Dir(d), e.Name()) == d {
				continue
			}
			if _, err := strconv.Atoi(pid); err != nil {
				continue
			}
			if _, err := os.Stat("/proc/" + pid); err == nil {
				continue
			}
			removeTree(filepath.Join(filepath.Dir(d), e.Name()), 3)
		}
	}
}

// removeTree removes the empty cgroup directories below and at dir.
func removeTree(dir string, depth int) {
	if depth > 0 {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if e.IsDir() {
				removeTree(filepath.Join(dir, e.Name()), depth-1)
			}
		}
	}
	unix.Rmdir(dir)
}

// removeParents deletes our kiln-<pid> groups when empty.
func (c *cgroups) removeParents() {
	for _, d := range []string{c.memory, c.pids} {
		if d != "" {
			unix.Rmdir(d)
		}
	}
}
