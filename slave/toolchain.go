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

// Detect finds the toolchains of the built-in languages on this machine:
// gcc (c), g++ (cpp), javac with its java (java) and python3 (python).
// Paths are absolute with symlinks resolved; Compiler is "gcc 12.2.0",
// "javac 17.0.15", "Python 3.11.2". A missing or broken toolchain is left
// out.
func Detect(ctx context.Context) []wire.Toolchain {
	tcs, _ := DetectLanguages(ctx, BuiltinLanguages())
	return tcs
}

// Missing is a language whose toolchain was not found, and why.
type Missing struct {
	Language string
	Reason   string
}

// DetectLanguages finds the toolchain of each language on this machine.
// Those it finds are returned as toolchains to announce (with the
// language's extensions, allowed options and descriptor hash); the others
// are reported in missing, never announced.
func DetectLanguages(ctx context.Context, specs []LanguageSpec) (found []wire.Toolchain, missing []Missing) {
	d := detector{lookPath: exec.LookPath}
	for _, s := range specs {
		tc, why := d.detectOne(ctx, s)
		if why != "" {
			missing = append(missing, Missing{Language: s.Name, Reason: why})
			continue
		}
		found = append(found, tc)
	}
	return found, missing
}

// detector holds what detection reads from the machine, for tests.
type detector struct {
	lookPath func(string) (string, error)
}

func (d detector) detect(ctx context.Context) []wire.Toolchain {
	var tcs []wire.Toolchain
	for _, s := range BuiltinLanguages() {
		if tc, why := d.detectOne(ctx, s); why == "" {
			tcs = append(tcs, tc)
		}
	}
	return tcs
}

// detectOne finds one language's tool and version, or says why not.
func (d detector) detectOne(ctx context.Context, s LanguageSpec) (wire.Toolchain, string) {
	tool := d.tool(ctx, s.Detect)
	if tool == "" {
		return wire.Toolchain{}, "none of " + strings.Join(s.Detect.Tools, ", ") + " found"
	}
	vars := map[string]string{"{tool}": tool, "{tool_dir}": filepath.Dir(tool)}
	for _, r := range expand(s.Detect.Requires, func(h string) string { return vars[h] }) {
		if !isExecutable(r) {
			return wire.Toolchain{}, r + " is missing"
		}
	}
	version := filepath.Base(tool)
	if len(s.Detect.Version) > 0 {
		version = firstLine(probe(ctx, tool, s.Detect.Version...))
		if version == "" {
			return wire.Toolchain{}, tool + " " + strings.Join(s.Detect.Version, " ") + " failed"
		}
		if s.Detect.VersionPrefix != "" {
			version = s.Detect.VersionPrefix + " " + version
		}
	}
	return wire.Toolchain{Language: s.Name, Compiler: version, Path: tool,
		Extensions: s.Extensions, Options: s.allowedOptions(), Hash: s.Hash()}, ""
}

// tool returns the real path of the first of spec's tools that is an
// executable, or "". A "#!" script (a pyenv shim costs ~180 ms per start)
// is replaced by the interpreter ScriptProbe prints, or skipped.
func (d detector) tool(ctx context.Context, spec DetectSpec) string {
	for _, t := range spec.Tools {
		p := ""
		switch {
		case !filepath.IsAbs(t):
			p = d.resolve(t)
		case strings.ContainsAny(t, "*?["):
			if m, _ := filepath.Glob(t); len(m) > 0 {
				p = realPath(m[len(m)-1]) // the last in order: usually the newest version
			}
		case isExecutable(t):
			p = realPath(t)
		}
		if p == "" || !isExecutable(p) {
			continue
		}
		if !isScript(p) {
			return p
		}
		if len(spec.ScriptProbe) == 0 {
			continue
		}
		exe := firstLine(probe(ctx, p, spec.ScriptProbe...))
		if exe != "" && filepath.IsAbs(exe) && isExecutable(exe) && !isScript(exe) {
			return realPath(exe)
		}
	}
	return ""
}

// resolve finds name on PATH and returns its real absolute path, or "".
func (d detector) resolve(name string) string {
	p, err := d.lookPath(name)
	if err != nil {
		return ""
	}
	return realPath(p)
}

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
