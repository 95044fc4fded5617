package slave

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v3/host"
	"github.com/shirou/gopsutil/v3/mem"

	"kiln/transport/wire"
)

// HostInfo describes the machine a slave runs on, as announced in Register.
type HostInfo struct {
	OS       string
	Kernel   string
	Arch     string
	CPUs     int
	MemBytes uint64
}

// DetectHost reads the host facts; fields it cannot read stay at
// runtime's values or zero.
func DetectHost(ctx context.Context) HostInfo {
	h := HostInfo{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU()}
	if info, err := host.InfoWithContext(ctx); err == nil {
		if info.Platform != "" {
			h.OS = strings.TrimSpace(info.OS + " " + info.Platform + " " + info.PlatformVersion)
		}
		h.Kernel = info.KernelVersion
		if info.KernelArch != "" {
			h.Arch = info.KernelArch
		}
	}
	if vm, err := mem.VirtualMemoryWithContext(ctx); err == nil {
		h.MemBytes = vm.Total
	}
	return h
}

// Detect finds the toolchains of this machine: gcc (c), g++ (cpp),
// javac with its java (java) and python3 (python). Paths are absolute with
// symlinks resolved; Compiler is "gcc 12.2.0", "javac 17.0.15",
// "Python 3.11.2". A missing or broken toolchain is left out.
func Detect(ctx context.Context) []wire.Toolchain {
	return detector{lookPath: exec.LookPath, pythons: []string{"/usr/bin/python3"}}.detect(ctx)
}

// detector holds what Detect reads from the machine, for tests.
type detector struct {
	lookPath func(string) (string, error)
	pythons  []string // preferred interpreters, tried before PATH
}

func (d detector) detect(ctx context.Context) []wire.Toolchain {
	var tcs []wire.Toolchain
	add := func(lang, path, version string) {
		if path != "" && version != "" {
			tcs = append(tcs, wire.Toolchain{Language: lang, Compiler: version, Path: path})
		}
	}
	if p := d.resolve("gcc"); p != "" {
		add(wire.LangC, p, prefixed("gcc", probe(ctx, p, "-dumpfullversion")))
	}
	if p := d.resolve("g++"); p != "" {
		add(wire.LangCPP, p, prefixed("g++", probe(ctx, p, "-dumpfullversion")))
	}
	if p := d.resolve("javac"); p != "" && isExecutable(javaBeside(p)) {
		add(wire.LangJava, p, firstLine(probe(ctx, p, "-version")))
	}
	if p := d.python(ctx); p != "" {
		add(wire.LangPython, p, firstLine(probe(ctx, p, "--version")))
	}
	return tcs
}

// resolve finds name on PATH and returns its real absolute path, or "".
func (d detector) resolve(name string) string {
	p, err := d.lookPath(name)
	if err != nil {
		return ""
	}
	return realPath(p)
}

// python prefers a real interpreter over a PATH entry that is a script
// (a pyenv shim costs ~180 ms per start); for a script it asks the
// interpreter behind it for its sys.executable.
func (d detector) python(ctx context.Context) string {
	for _, p := range d.pythons {
		if isExecutable(p) && !isScript(p) {
			return realPath(p)
		}
	}
	p := d.resolve("python3")
	if p == "" || !isScript(p) {
		return p
	}
	exe := firstLine(probe(ctx, p, "-c", "import sys; print(sys.executable)"))
	if exe == "" || !filepath.IsAbs(exe) || isScript(exe) {
		return ""
	}
	return realPath(exe)
}

// javaBeside returns the java launcher of the JDK that javac belongs to.
func javaBeside(javac string) string { return filepath.Join(filepath.Dir(javac), "java") }

// probe runs a trusted toolchain binary briefly and returns its combined
// output, or "" on failure.
func probe(ctx context.Context, path string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func prefixed(name, version string) string {
	if version = firstLine(version); version == "" {
		return ""
	}
	return name + " " + version
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(s)
}

func realPath(p string) string {
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		return ""
	}
	a, err := filepath.Abs(r)
	if err != nil {
		return ""
	}
	return a
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// isScript reports whether p starts with "#!".
func isScript(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 2)
	n, _ := f.Read(head)
	return bytes.Equal(head[:n], []byte("#!"))
}
