package slave

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"kiln/internal/testenv"
	"kiln/slave/sandbox"
	"kiln/transport/wire"
)

// The built-in table reproduces the commands Kiln ran before languages
// were data, argument for argument.
func TestBuiltinLanguagesReproduceCommands(t *testing.T) {
	langs := map[string]*language{}
	for _, s := range BuiltinLanguages() {
		langs[s.Name] = newLanguage(s)
	}
	if got := slices.Sorted(func(yield func(string) bool) {
		for k := range langs {
			if !yield(k) {
				return
			}
		}
	}); !slices.Equal(got, []string{"c", "cpp", "java", "python"}) {
		t.Fatalf("built-in languages %v", got)
	}
	compile := func(lang, src string) []string {
		argv, err := langs[lang].compile("/usr/bin/tool", src, nil)
		if err != nil {
			t.Fatal(err)
		}
		return argv
	}
	for _, tc := range []struct {
		got, want []string
	}{
		{compile("c", "a.c"), []string{"/usr/bin/tool", "-O2", "-pipe", "-std=gnu17", "-o", "main", "a.c", "-lm"}},
		{compile("cpp", "a.cpp"), []string{"/usr/bin/tool", "-O2", "-pipe", "-std=gnu++17", "-o", "main", "a.cpp"}},
		{compile("java", "Hello.java"), []string{"/usr/bin/tool", "-J-XX:+UseSerialGC", "-J-XX:TieredStopAtLevel=1",
			"-J-XX:-UsePerfData", "-J-Xmx512m", "-encoding", "UTF-8", "-d", ".", "Hello.java"}},
		{langs["c"].run("/usr/bin/gcc", "a.c", 256<<20), []string{"./main"}},
		{langs["java"].run("/jdk/bin/javac", "Hello.java", 256<<20), []string{"/jdk/bin/java", "-XX:+UseSerialGC",
			"-XX:TieredStopAtLevel=1", "-XX:-UsePerfData", "-Xss64m", "-Xmx192m", "-cp", ".", "Hello"}},
		{langs["java"].run("/jdk/bin/javac", "Hello.java", 1<<20), []string{"/jdk/bin/java", "-XX:+UseSerialGC",
			"-XX:TieredStopAtLevel=1", "-XX:-UsePerfData", "-Xss64m", "-Xmx32m", "-cp", ".", "Hello"}},
		{langs["python"].run("/usr/bin/python3.11", "x.py", 0), []string{"/usr/bin/python3.11", "-B", "x.py"}},
		{langs["java"].artifacts([]string{"A.class", "A$1.class", "A.java", "x"}), []string{"A.class", "A$1.class"}},
	} {
		if !slices.Equal(tc.got, tc.want) {
			t.Errorf("got  %q\nwant %q", tc.got, tc.want)
		}
	}
	for name, want := range map[string]string{"prog.cc": "prog.cc", "prog.CPP": "prog.CPP", "prog.txt": "main.cpp", "x.py": "main.cpp"} {
		if got, err := langs["cpp"].sourceName(name); err != nil || got != want {
			t.Errorf("cpp sourceName(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	if !langs["java"].jvm() || langs["c"].jvm() {
		t.Error("only java runs without an address space limit")
	}
}

// A submitter picks among the options a language allows, at most one per
// group; anything else is refused before the compiler runs.
func TestLanguageOptions(t *testing.T) {
	var cpp *language
	for _, s := range BuiltinLanguages() {
		if s.Name == "cpp" {
			cpp = newLanguage(s)
		}
	}
	argv, err := cpp.compile("g++", "a.cpp", []string{"-std=c++20", "-O0"})
	if err != nil || !slices.Equal(argv, []string{"g++", "-O0", "-pipe", "-std=c++20", "-o", "main", "a.cpp"}) {
		t.Fatalf("argv %q, %v", argv, err)
	}
	for _, bad := range [][]string{{"-fplugin=/tmp/x.so"}, {"-std=c++20", "-std=c++17"}, {"-O2 -fplugin=x"}, {"-o", "/etc/passwd"}} {
		if _, err := cpp.compile("g++", "a.cpp", bad); !errors.Is(err, ErrOption) {
			t.Errorf("options %q: err %v, want ErrOption", bad, err)
		}
	}
}

// A broken languages file is refused with its line and the reason.
func TestParseLanguagesErrors(t *testing.T) {
	good := `{"languages": [
  {"name": "sh", "extensions": [".sh"], "detect": {"tools": ["bash"]},
   "source": {"name": "main.sh"}, "run": ["{tool}", "{src}"]}
]}`
	entry := good[strings.Index(good, "{\"name"):strings.LastIndex(good, "]")]
	if specs, err := ParseLanguages("good.json", []byte(good)); err != nil || len(specs) != 1 {
		t.Fatalf("good file: %v, %v", specs, err)
	}
	for _, tc := range []struct{ name, data, want string }{
		{"syntax", "{\"languages\": [\n  {\"name\": \"x\",,}\n]}", "f.json:2: "},
		{"unknown field", "{\"languages\": [\n\n {\"name\": \"sh\", \"complie\": [\"x\"]}]}", "f.json:3: language 1: json: unknown field \"complie\""},
		{"type", "{\"languages\": [\n{\"name\": 3}]}", "f.json:2: "},
		{"empty", `{"languages": []}`, "no languages"},
		{"trailing", good + "\n{}", "data after"},
		{"no run", "{\"languages\": [\n{\"name\": \"sh\", \"extensions\": [\".sh\"], \"detect\": {\"tools\": [\"bash\"]}, \"source\": {\"name\": \"main.sh\"}}]}",
			"f.json:2: language 1 (\"sh\"): run is empty"},
		{"placeholder", strings.Replace(good, `"{src}"`, `"{source}"`, 1), "unknown placeholder {source}"},
		{"bad name", strings.Replace(good, `"sh"`, `"S H"`, 1), "name must match"},
		{"relative tool", strings.Replace(good, `["bash"]`, `["bin/bash"]`, 1), "neither an absolute path"},
		{"fallback ext", strings.Replace(good, `"main.sh"`, `"main.py"`, 1), "does not end in one of the extensions"},
		{"twice", "{\"languages\": [" + entry + ",\n" + entry + "]}", "f.json:4: language \"sh\" listed twice"},
		{"compile without artifacts", strings.Replace(good, `"run"`, `"compile": ["{tool}"], "run"`, 1), "needs artifacts"},
		{"option default", strings.Replace(good, `"run"`, `"compile": ["{tool}", "{opt.o}"], "artifacts": ["a"], "options": [{"name": "o", "default": "-O9", "allowed": ["-O2"]}], "run"`, 1), "default \"-O9\" is not allowed"},
		{"option glued", strings.Replace(good, `"run"`, `"compile": ["{tool}", "x{opt.o}"], "artifacts": ["a"], "options": [{"name": "o", "default": "-O2", "allowed": ["-O2"]}], "run"`, 1), "must be a whole argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseLanguages("f.json", []byte(tc.data))
			if !errors.Is(err, ErrLanguagesFile) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrLanguagesFile containing %q", err, tc.want)
			}
		})
	}
	if _, err := ReadLanguages(filepath.Join(t.TempDir(), "none.json")); !errors.Is(err, ErrLanguagesFile) {
		t.Errorf("missing file: %v", err)
	}
}

// The shipped examples/languages.json parses, and each of its languages is
// announced only where its toolchain is found, with the rest reported.
func TestShippedLanguagesFile(t *testing.T) {
	specs, err := ReadLanguages(filepath.Join("..", "examples", "languages.json"))
	if err != nil {
		t.Fatal(err)
	}
	specs = append(specs, LanguageSpec{Name: "nope", Extensions: []string{".nope"},
		Detect: DetectSpec{Tools: []string{"kiln-no-such-compiler"}}, Source: SourceSpec{Name: "a.nope"}, Run: []string{"{tool}"}})
	found, missing := DetectLanguages(context.Background(), specs)
	if len(found)+len(missing) != len(specs) {
		t.Fatalf("found %d + missing %d != %d", len(found), len(missing), len(specs))
	}
	if i := slices.IndexFunc(missing, func(m Missing) bool { return m.Language == "nope" }); i < 0 || !strings.Contains(missing[i].Reason, "kiln-no-such-compiler") {
		t.Errorf("missing %+v does not report nope", missing)
	}
	for _, tc := range found {
		if tc.Path == "" || tc.Compiler == "" || tc.Hash == "" || len(tc.Extensions) == 0 || tc.Language == "nope" {
			t.Errorf("toolchain %+v", tc)
		}
	}
}

// bashSpec is a language added only by configuration.
const bashSpec = `{"languages": [{
  "name": "bash", "extensions": [".sh"],
  "detect": {"tools": ["/bin/bash", "bash"], "version": ["--version"]},
  "source": {"name": "main.sh"},
  "run": ["{tool}", "{src}"],
  "limits": {"default": {"time_ms": 3000}, "max": {"time_ms": 4000}}
}]}`

// A language that exists only in a languages file is detected, announced
// with its extensions and hash, and runs end to end; its own maximum
// limits apply.
func TestConfiguredLanguageRuns(t *testing.T) {
	testenv.Command(t, "bash")
	specs, err := ParseLanguages("bash.json", []byte(bashSpec))
	if err != nil {
		t.Fatal(err)
	}
	specs = MergeLanguages(BuiltinLanguages(), specs)
	tcs, _ := DetectLanguages(context.Background(), specs)
	i := slices.IndexFunc(tcs, func(tc wire.Toolchain) bool { return tc.Language == "bash" })
	if i < 0 {
		t.Fatalf("bash not detected: %+v", tcs)
	}
	if !strings.HasPrefix(tcs[i].Compiler, "GNU bash") || !slices.Equal(tcs[i].Extensions, []string{".sh"}) {
		t.Errorf("bash toolchain %+v", tcs[i])
	}
	e, err := NewExecutor(ExecConfig{Name: "s", WorkRoot: t.TempDir(), Runner: &sandbox.Plain{}, Toolchains: tcs, Languages: specs})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(e.Toolchains(), func(tc wire.Toolchain) bool { return tc.Language == "bash" && tc.Hash != "" }) {
		t.Fatalf("executor toolchains %+v", e.Toolchains())
	}
	c := &collector{}
	res := e.Execute(context.Background(), Job{ID: "b", Language: "bash", FileName: "x.sh",
		Source: []byte("read a; echo \"bash says $((a * 2))\"\n"), Stdin: []byte("21\n")}, c.emit)
	if res.Status != wire.StatusOK || c.stream(wire.StreamStdout) != "bash says 42\n" {
		t.Fatalf("%+v stdout %q stderr %q", res, c.stream(wire.StreamStdout), c.stream(wire.StreamStderr))
	}
	if _, err := e.Limits("bash", wire.JobLimits{TimeMs: 60000}); err == nil {
		t.Error("bash asking 60 s ran, over its descriptor's maximum of 4 s")
	}
	if got, err := e.Limits("bash", wire.JobLimits{}); err != nil || got.TimeMs != 3000 {
		t.Errorf("bash default time limit %d (%v), want its descriptor's 3000", got.TimeMs, err)
	}
}

// A changed descriptor never reuses a build made under the old one.
func TestCacheKeyFollowsDescriptor(t *testing.T) {
	needLang(t, wire.LangC)
	cache, err := NewCache(t.TempDir(), 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	run := func(specs []LanguageSpec) wire.Result {
		e, err := NewExecutor(ExecConfig{Name: "s", WorkRoot: t.TempDir(), Runner: &sandbox.Plain{},
			Toolchains: toolchains(t), Languages: specs, Cache: cache})
		if err != nil {
			t.Fatal(err)
		}
		res, _ := execute(t, e, Job{Language: wire.LangC, FileName: "k.c", Source: []byte("int main(void){return 0;}\n")})
		return res
	}
	base := BuiltinLanguages()
	if r := run(base); r.Status != wire.StatusOK || r.Cached {
		t.Fatalf("first %+v", r)
	}
	if r := run(base); !r.Cached {
		t.Fatalf("same descriptor, not cached: %+v", r)
	}
	changed := slices.Clone(base)
	changed[0].MemoryErrors = []string{"something else"}
	if r := run(changed); r.Status != wire.StatusOK || r.Cached {
		t.Fatalf("changed descriptor reused the cache: %+v", r)
	}
}

func TestReadLanguagesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "l.json")
	if err := os.WriteFile(p, []byte(bashSpec), 0o600); err != nil {
		t.Fatal(err)
	}
	if specs, err := ReadLanguages(p); err != nil || specs[0].Name != "bash" {
		t.Fatalf("%v %v", specs, err)
	}
}

// BenchmarkLanguageCommands is what a job pays for its command lines: a
// cached C job builds its compile command (for the cache key) and its run
// command, a Python job its run command.
func BenchmarkLanguageCommands(b *testing.B) {
	langs := map[string]*language{}
	for _, s := range BuiltinLanguages() {
		langs[s.Name] = newLanguage(s)
	}
	b.Run("c", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := langs["c"].compile("/usr/bin/gcc", "a.c", nil); err != nil {
				b.Fatal(err)
			}
			langs["c"].run("/usr/bin/gcc", "a.c", 256<<20)
		}
	})
	b.Run("python", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			langs["python"].run("/usr/bin/python3", "a.py", 256<<20)
		}
	})
}

// expandArg finds the placeholders placeholderRe finds, on every string
// of braces and letters up to 9 bytes long.
func TestExpandArgMatchesRegexp(t *testing.T) {
	lookup := func(h string) string { return "<" + h + ">" }
	alphabet := "{}a."
	var all func(prefix string, n int)
	checked := 0
	all = func(prefix string, n int) {
		want := placeholderRe().ReplaceAllStringFunc(prefix, lookup)
		if got := expandArg(prefix, lookup); got != want {
			t.Fatalf("expandArg(%q) = %q, the regexp gives %q", prefix, got, want)
		}
		checked++
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			all(prefix+string(c), n-1)
		}
	}
	all("", 9)
	if checked < 300000 {
		t.Fatalf("checked %d strings", checked)
	}
}

// A job's run command costs its argument slice and nothing else when its
// placeholders are whole arguments (Python: {tool} -B {src}).
func TestRunCommandAllocations(t *testing.T) {
	var py *language
	for _, s := range BuiltinLanguages() {
		if s.Name == "python" {
			py = newLanguage(s)
		}
	}
	var argv []string
	if n := testing.AllocsPerRun(100, func() { argv = py.run("/usr/bin/python3", "a.py", 256<<20) }); n > 1 {
		t.Errorf("run command: %v allocations, want 1", n)
	}
	if !slices.Equal(argv, []string{"/usr/bin/python3", "-B", "a.py"}) {
		t.Errorf("argv %q", argv)
	}
}
