package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"kiln/certs"
	"kiln/client"
	"kiln/transport"
	"kiln/transport/wire"
)

// Asynchronous use (issue 12): kiln submit prints a job id and exits;
// kiln result prints the job's result from any process holding the same
// bundle; kiln jobs lists the bundle's jobs. kiln run and kiln result
// --wait carry their job over a lost connection (see reattach).

// exitPending is the exit code of `kiln result` without --wait for a job
// that has not ended yet.
const exitPending = 3

// reattachWindow bounds how long a command whose master went away keeps
// trying to reach it again, when it has no --timeout of its own.
const reattachWindow = 2 * time.Minute

func cmdSubmit(ctx context.Context, e env, args []string) int {
	var o runOptions
	fs := runFlags(e, &o)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: kiln submit --bundle FILE --master HOST:PORT [--stdin F] [limits] FILE\n\n"+
			"Submits FILE to run on the cluster, prints its job id and exits; the master keeps\n"+
			"the job and its result (see kiln result, kiln jobs). A sealed job's key is wrapped\n"+
			"ahead for every slave that runs the language now.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	files, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return exitUsage
	}
	if len(files) != 1 {
		fmt.Fprintln(e.stderr, "kiln submit: want exactly one FILE")
		return exitUsage
	}
	ctx, cancel := o.withTimeout(ctx)
	defer cancel()
	req, c, code := o.connect(ctx, e, "submit", files[0])
	if c == nil {
		return code
	}
	defer c.Close()
	req.Away = true
	job, err := c.Submit(ctx, req)
	if job == nil {
		if ctx.Err() != nil {
			return interruptedCode(ctx, e, "submit")
		}
		return reportErr(e, "submit", err)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "kiln submit: warning: %v\n", err)
	}
	if o.json {
		json.NewEncoder(e.stdout).Encode(map[string]string{"job": job.ID()})
	} else {
		fmt.Fprintln(e.stdout, job.ID())
	}
	return 0
}

func cmdResult(ctx context.Context, e env, args []string) int {
	var o runOptions
	fs := flag.NewFlagSet("kiln result", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	o.register(fs)
	wait := fs.Bool("wait", false, "wait for the job to end (reconnecting if the master goes away)")
	fs.BoolVar(&o.json, "json", false, "print one JSON object with the result")
	fs.BoolVar(&o.verbose, "v", false, "print a summary line even when the job succeeded")
	fs.DurationVar(&o.timeout, "timeout", 0, "give up after this `DURATION` (the job goes on)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: kiln result --bundle FILE --master HOST:PORT [--wait] [--json] JOB\n\n"+
			"Prints a job's output and result, as kiln run does, with the same exit codes; a job\n"+
			"that has not ended exits 3 without --wait. Only the key that submitted a job (or\n"+
			"an admin key) may see it.\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), "\n"+exitCodesHelp)
	}
	ids, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return exitUsage
	}
	if len(ids) != 1 {
		fmt.Fprintln(e.stderr, "kiln result: want exactly one JOB id")
		return exitUsage
	}
	if err := o.resolve(e); err != nil {
		fmt.Fprintf(e.stderr, "kiln result: %v\n", err)
		return exitUsage
	}
	ctx, cancel := o.withTimeout(ctx)
	defer cancel()
	c, code := o.dial(ctx, e, "result")
	if c == nil {
		return code
	}
	defer func() { c.Close() }()
	job, err := c.Attach(ctx, ids[0])
	if err != nil {
		return reportErr(e, "result", err)
	}
	if !*wait && !ended(job.AttachedState()) {
		fmt.Fprintf(e.stderr, "kiln result: job %s is %s\n", job.ID(), job.AttachedState())
		return exitPending
	}
	o.detach = true
	return o.followAcross(ctx, e, &c, job, "result")
}

func ended(st string) bool { return st == wire.StateDone || st == wire.StateFailed }

func cmdJobs(ctx context.Context, e env, args []string) int {
	var o runOptions
	fs := flag.NewFlagSet("kiln jobs", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	o.register(fs)
	fs.BoolVar(&o.json, "json", false, "print the list as JSON")
	help := "Usage: kiln jobs --bundle FILE --master HOST:PORT [--json]\n\n" +
		"Lists this key's jobs (every job for an admin key), newest first.\n\nFlags:\n"
	if code, done := parseFlags(fs, e, args, help); done {
		return code
	}
	if err := o.resolve(e); err != nil {
		fmt.Fprintf(e.stderr, "kiln jobs: %v\n", err)
		return exitUsage
	}
	c, code := o.dial(ctx, e, "jobs")
	if c == nil {
		return code
	}
	defer c.Close()
	jobs, more, err := c.Jobs(ctx)
	if err != nil {
		return reportErr(e, "jobs", err)
	}
	if o.json {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]any{"jobs": jobs, "truncated": more})
		return 0
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSTATE\tSTATUS\tATTEMPT\tLANG\tFILE\tSUBMITTED")
	for _, j := range jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", j.JobID, j.State, j.Status, j.Attempt, j.Language, j.FileName,
			time.UnixMilli(j.CreatedMs).Format(time.DateTime))
	}
	tw.Flush()
	if more {
		fmt.Fprintln(e.stderr, "kiln jobs: more jobs than shown")
	}
	return 0
}

// followAcross follows job like kiln run, and when the connection to the
// master is lost, dials again (with backoff, until ctx or the reattach
// window ends) and carries the job over, printing only what it had not
// printed yet. *c is replaced by the new client.
func (o *runOptions) followAcross(ctx context.Context, e env, c **client.Client, job *client.Job, cmd string) int {
	for {
		code, lost := o.followOnce(ctx, e, job, cmd)
		if !lost {
			return code
		}
		nc, nj, ok := o.reattach(ctx, e, job, cmd)
		if !ok {
			return exitUnreachable
		}
		(*c).Close()
		*c, job = nc, nj
	}
}

// followOnce follows job on its session; lost reports that the session
// ended before the job did.
func (o *runOptions) followOnce(ctx context.Context, e env, job *client.Job, cmd string) (code int, lost bool) {
	events := job.Events()
	for open := true; open; {
		select {
		case ev, ok := <-events:
			if open = ok; ok {
				o.show(e, job, ev)
			}
		case <-ctx.Done():
			if o.detach {
				return interruptedCode(ctx, e, cmd), false
			}
			return cancelJob(ctx, e, job), false
		}
	}
	out, err := job.Wait(ctx)
	switch {
	case err == nil:
		return o.finish(e, out), false
	case ctx.Err() != nil && o.detach:
		return interruptedCode(ctx, e, cmd), false
	case ctx.Err() != nil:
		return cancelJob(ctx, e, job), false
	case errors.Is(err, client.ErrConnLost) && reattachable(err):
		return 0, true
	}
	return reportErr(e, cmd, err), false
}

// reattach dials the master again until it answers, then carries job over.
func (o *runOptions) reattach(ctx context.Context, e env, job *client.Job, cmd string) (*client.Client, *client.Job, bool) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, reattachWindow)
		defer cancel()
	}
	fmt.Fprintf(e.stderr, "kiln %s: lost the master while job %s was running; reconnecting\n", cmd, job.ID())
	delay := 200 * time.Millisecond
	for ctx.Err() == nil {
		if c, code := o.dialQuiet(ctx); code == 0 {
			nj, err := c.Reattach(ctx, job)
			if err == nil {
				return c, nj, true
			}
			c.Close()
			var re *client.RequestError
			if errors.As(err, &re) && re.Code == wire.CodeNotFound {
				fmt.Fprintf(e.stderr, "kiln %s: the master no longer knows job %s\n", cmd, job.ID())
				return nil, nil, false
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
	fmt.Fprintf(e.stderr, "kiln %s: could not reach the master again; job %s may still be running (kiln result --wait %s)\n", cmd, job.ID(), job.ID())
	return nil, nil, false
}

// dialQuiet connects like dial, printing nothing: for retries.
func (o *runOptions) dialQuiet(ctx context.Context) (*client.Client, int) {
	b, err := certs.ReadBundle(o.bundle)
	if err != nil {
		return nil, exitUsage
	}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c, err := client.Dial(dctx, client.Config{Bundle: b, Master: o.master})
	if err != nil {
		return nil, exitUnreachable
	}
	return c, 0
}

// reattachable reports whether a lost session is worth dialling again: a
// network loss or a master shutting down, not a refusal of this key
// (revoked, kicked, ...).
func reattachable(err error) bool {
	var ref *transport.RefusedError
	if errors.As(err, &ref) {
		return ref.Code == wire.CodeShutdown
	}
	return true
}
