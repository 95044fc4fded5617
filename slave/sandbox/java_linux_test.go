package sandbox

import (
	"strings"
	"testing"
	"time"

	"kiln/internal/testenv"
)

func javaLimits() Limits {
	return Limits{Wall: 30 * time.Second, CPU: 20 * time.Second, MemoryBytes: 256 << 20, OutputBytes: 1 << 20, FileBytes: 64 << 20, Procs: 64, OpenFiles: 512, NoAddressSpaceLimit: true}
}

func TestStrictJava(t *testing.T) {
	testenv.File(t, "/usr/bin/javac")
	r := newStrictT(t)
	dir := t.TempDir()
	writeFile(t, dir, "Main.java", `public class Main {
	public static void main(String[] a) throws Exception {
		if (a.length > 0) {
			java.util.List<long[]> l = new java.util.ArrayList<>();
			for (;;) l.add(new long[1 << 20]);
		}
		System.out.println("hello " + System.getProperty("user.name") + " " + Runtime.getRuntime().availableProcessors());
	}
}
`)
	res := run(t, r, dir, javaLimits(), "", "javac", "-J-Xss8m", "Main.java")
	if res.ExitCode != 0 {
		t.Fatalf("javac: %+v\n%s", res.Outcome, res.stderr)
	}
	t.Logf("javac: wall %v cpu %v peak %d KiB", res.Wall, res.CPU, res.PeakMemoryKiB)
	res = run(t, r, dir, javaLimits(), "", "java", "-cp", ".", "Main")
	if res.ExitCode != 0 || !strings.HasPrefix(res.stdout, "hello sandbox") {
		t.Fatalf("java hello: %+v\n%s\n%s", res.Outcome, res.stdout, res.stderr)
	}
	t.Logf("java hello: wall %v cpu %v peak %d KiB", res.Wall, res.CPU, res.PeakMemoryKiB)
	res = run(t, r, dir, javaLimits(), "", "java", "-cp", ".", "Main", "hog")
	if !res.MemoryExceeded && !strings.Contains(res.stderr, "OutOfMemoryError") {
		t.Fatalf("java hog not stopped by the memory limit: %+v\n%s", res.Outcome, res.stderr)
	}
	t.Logf("java hog: %+v", res.Outcome)
	normalJob(t, r)
}
