package tui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"kiln/client"
	"kiln/transport/wire"
)

// Execute reads the selected file from disk (so an edited file runs as
// saved), submits it, prints its output as it streams and then its result.
// It blocks until the job ends, is cancelled, or ctx ends; the outcome is
// printed, and returned when the job ran.
func (m *Model) Execute(ctx context.Context) (client.Outcome, error) {
	var out client.Outcome
	c, err := m.client()
	if err != nil {
		return out, m.fail(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	file, err := m.startJob(cancel)
	if err != nil {
		return out, m.fail(err)
	}
	m.obs.Changed(m.State())
	defer m.endJob()
	src, err := os.ReadFile(file)
	if err != nil {
		return out, m.fail(err)
	}
	name := filepath.Base(file)
	tests, err := m.loadTests()
	if err != nil {
		return out, m.fail(err)
	}
	m.print(Note, "Submitting %s (%s, %d bytes) ...", name, wire.LanguageOf(name), len(src))
	in := m.GetInput()
	job, err := c.Submit(ctx, client.Request{FileName: file, Source: src, Stdin: []byte(in.Stdin), Limits: in.Limits,
		Progress: m.progress, Seal: true, Tests: tests})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("cancelled before the master accepted the job")
		}
		return out, m.fail(err)
	}
	m.update(func(s *State) { s.JobID, s.Phase = job.ID(), wire.StateQueued })
	m.mu.Lock()
	m.job = job
	m.mu.Unlock()
	m.stream(ctx, job, tests)
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer wcancel()
	if ctx.Err() != nil { // quitting: give the cancel a moment to land
		job.Cancel(wctx)
	}
	out, err = job.Wait(wctx)
	if err != nil {
		return out, m.fail(err)
	}
	if out.Result.Tests != nil && out.Result.Status == wire.StatusOK {
		m.printTests(name, out)
		return out, nil
	}
	m.printResult(name, src, out)
	return out, nil
}

// startJob marks a job as running, unless one already is.
func (m *Model) startJob(cancel context.CancelFunc) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.st.Running:
		return "", ErrBusy
	case m.st.File == "":
		return "", errors.New("no file selected: press F3 to select one")
	}
	m.cancel = cancel
	m.st.Running, m.st.Phase, m.st.JobID, m.st.Sent, m.st.Total = true, "uploading", "", 0, 0
	m.st.JobStart = m.cfg.Now()
	return m.st.File, nil
}

func (m *Model) endJob() {
	m.mu.Lock()
	m.cancel, m.job = nil, nil
	m.mu.Unlock()
	m.update(func(s *State) { s.Running, s.Phase = false, "" })
}

func (m *Model) fail(err error) error {
	m.print(Failure, "%v", err)
	return err
}

func (m *Model) progress(sent, total int64) {
	m.update(func(s *State) { s.Sent, s.Total = sent, total })
}

// stream prints the job's events until it ends or ctx ends.
func (m *Model) stream(ctx context.Context, job *client.Job, tests *client.Tests) {
	events := job.Events()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Test != nil {
				m.testLine(tests, *ev.Test)
				continue
			}
			m.event(ev)
		case <-ctx.Done():
			return
		}
	}
}

// event prints one job event.
func (m *Model) event(ev client.Event) {
	switch {
	case ev.State != nil:
		st := ev.State
		phase := st.State
		switch st.State {
		case wire.StateAssigned, wire.StateRunning:
			phase = st.State + " on " + st.Slave
		case wire.StateRequeued:
			m.print(Failure, "Slave %s was lost; the job is queued again (its output so far is void).", st.Slave)
		}
		m.update(func(s *State) { s.Phase = phase })
	case ev.Output != nil:
		kind := map[uint8]Kind{wire.StreamStdout: Stdout, wire.StreamStderr: Stderr, wire.StreamCompile: Compile}[ev.Output.Stream]
		m.obs.Printed(Line{Kind: kind, Text: string(ev.Output.Data)})
	}
}

// Cancel stops the running job: before it is accepted the submit is
// abandoned, after that the master is told to stop it on its slave.
func (m *Model) Cancel(ctx context.Context) error {
	m.mu.Lock()
	job, cancel, running := m.job, m.cancel, m.st.Running
	m.mu.Unlock()
	if !running {
		return nil
	}
	m.print(Note, "Cancelling ...")
	if job == nil {
		cancel()
		return nil
	}
	if err := job.Cancel(ctx); err != nil {
		return m.fail(err)
	}
	return nil
}

// printResult prints the end of a job: status, exit code, times, memory
// and slave, and for a compile error the source lines it names.
func (m *Model) printResult(name string, src []byte, o client.Outcome) {
	r := o.Result
	if len(o.Stdout)+len(o.Stderr) > 0 && !endsWithNewline(o.Stdout, o.Stderr) {
		m.obs.Printed(Line{Kind: Stdout, Text: "\n"})
	}
	if r.Status == wire.StatusCompileError {
		if len(r.CompileOutput) > 0 { // the compiler's output came with the result, not streamed
			m.obs.Printed(Line{Kind: Compile, Text: strings.TrimRight(string(r.CompileOutput), "\n") + "\n"})
		}
		for _, l := range SourceLines(o.CompileOutput, name, src) {
			m.print(Compile, "%s\n", l) // a Compile line is printed as is: each hint line ends its own
		}
	}
	kind := Success
	if r.Status != wire.StatusOK || r.ExitCode != 0 || r.Signal != 0 {
		kind = Failure
	}
	m.print(kind, "%s: %s", name, statusText(r))
	m.print(Detail, "%s", detailText(r))
}

func endsWithNewline(stdout, stderr []byte) bool {
	last := stdout
	if len(stderr) > 0 {
		last = stderr // not exact when both interleave; a blank line is harmless
	}
	return len(last) == 0 || last[len(last)-1] == '\n'
}

// statusText says how the job ended, in words.
func statusText(r wire.Result) string {
	var s string
	switch r.Status {
	case wire.StatusOK:
		s = fmt.Sprintf("ok, exit code %d", r.ExitCode)
	case wire.StatusRuntimeError:
		s = fmt.Sprintf("runtime error, exit code %d", r.ExitCode)
	case wire.StatusCompileError:
		s = "compile error"
	case wire.StatusTimeLimit:
		s = "time limit exceeded"
	case wire.StatusMemoryLimit:
		s = "memory limit exceeded"
	case wire.StatusOutputLimit:
		s = "output limit exceeded"
	case wire.StatusCancelled:
		s = "cancelled"
	default:
		s = "internal error"
	}
	if r.Signal != 0 {
		s += fmt.Sprintf(", killed by signal %d", r.Signal)
	}
	if r.Detail != "" {
		s += " (" + r.Detail + ")"
	}
	return s
}

// detailText gives the figures of a result: the program's, when it ran
// (not after a compile error or a job that never started), and where.
func detailText(r wire.Result) string {
	var parts []string
	switch r.Status {
	case wire.StatusOK, wire.StatusRuntimeError, wire.StatusTimeLimit, wire.StatusMemoryLimit, wire.StatusOutputLimit:
		parts = []string{
			fmt.Sprintf("wall %d ms", r.WallMs),
			fmt.Sprintf("cpu %d ms", r.CPUMs),
			"memory " + kib(r.MemoryKiB),
		}
	}
	slave := "slave " + orDash(r.Slave)
	if r.Compiler != "" {
		slave += " (" + r.Compiler
		if r.Cached {
			slave += ", cached build"
		}
		slave += ")"
	}
	return strings.Join(append(parts, slave), " · ")
}

func kib(k int64) string {
	if k >= 1024 {
		return fmt.Sprintf("%.1f MiB", float64(k)/1024)
	}
	return fmt.Sprintf("%d KiB", k)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
