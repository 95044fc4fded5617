package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigFileAndEnv sets the master from a configuration file with one
// flag on the command line overriding it, and a client from environment
// variables with one flag overriding them, and checks who wins.
func TestConfigFileAndEnv(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master process")
	}
	dir, bundle := clientBundle(t)
	addr := freeAddr(t)
	conf := writeFile(t, t.TempDir(), "master.conf", "# a master for the test\n"+
		"client-addr = "+addr+"\n"+
		"max-time = 3s\n"+
		"language-limits = python:max-memory=100MiB\n"+
		`log-format = "json"`+"\n")
	m := startKiln(t, "master", "master", "--config", conf, "--dir", dir, "--slave-addr", freeAddr(t), "--console", "off", "--max-time", "4s")
	m.waitOutput(t, `"msg":"master listening"`, 1) // log-format from the file
	prog := writeFile(t, t.TempDir(), "a.py", "print(1)\n")
	env := map[string]string{"KILN_BUNDLE": bundle, "KILN_MASTER": addr}
	with := func(k, v string) map[string]string {
		out := map[string]string{k: v}
		for k, v := range env {
			out[k] = v
		}
		return out
	}
	for _, tc := range []struct {
		env  map[string]string
		args []string
		code int
		msg  string
	}{
		{env, []string{"--time-limit", "5s"}, exitUsage, "over the maximum of 4s for python"}, // the flag won over the file's 3s
		{with("KILN_TIME_LIMIT", "5s"), nil, exitUsage, "over the maximum of 4s"},
		{with("KILN_MEMORY_LIMIT", "200MiB"), nil, exitUsage, "memory limit 200MiB is over the maximum of 100MiB"}, // repeatable setting from the file
		{with("KILN_TIME_LIMIT", "5s"), []string{"--time-limit", "1s"}, exitNoCapacity, "no connected slave"},      // the flag won over the environment
		{with("KILN_TIME_LIMIT", "soon"), nil, exitUsage, `KILN_TIME_LIMIT="soon"`},
	} {
		code, _, errs := runCLI(t.Context(), t, tc.env, append(append([]string{"run"}, tc.args...), prog)...)
		if code != tc.code || !strings.Contains(errs, tc.msg) {
			t.Errorf("%v %v: exit %d (want %d), stderr %q (want %q)", tc.env, tc.args, code, tc.code, errs, tc.msg)
		}
	}

	for _, tc := range []struct{ body, msg string }{
		{"dirr = /tmp\n", `master.conf:1: unknown setting "dirr" (the settings are the flags of 'kiln master --help')`},
		{"# ok\n\nmax-time 3s\n", "master.conf:3: want name = value"},
		{"max-time = forever\n", "master.conf:1: max-time: "},
	} {
		bad := writeFile(t, t.TempDir(), "master.conf", tc.body)
		code, _, errs := runCLI(t.Context(), t, nil, "master", "--config", bad, "--dir", dir)
		if code != exitUsage || !strings.Contains(errs, filepath.Dir(bad)) || !strings.Contains(errs, tc.msg) {
			t.Errorf("config %q: exit %d, stderr %q (want %q)", tc.body, code, errs, tc.msg)
		}
	}
}
