package main

import (
	"context"
	"flag"
	"log/slog"
	"path/filepath"
	"time"

	"kiln/certs"
	"kiln/master"
	"kiln/master/state"
)

// durableFlags are the flags of the master's durable state (issue 12).
type durableFlags struct {
	dataDir   string
	inMemory  bool
	retention time.Duration
	stateMax  sizeFlag
	minFree   sizeFlag
}

func (f *durableFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dataDir, "data-dir", "", "`DIR` of the durable job state (a one-node raft log and snapshots); default DIR/data inside the cluster directory")
	fs.BoolVar(&f.inMemory, "in-memory", false, "keep jobs in memory only: a restart loses them and clients' jobs end with their session")
	fs.DurationVar(&f.retention, "retention", master.DefaultRetention, "how long ended jobs are kept for 'kiln result' and 'kiln jobs'")
	f.stateMax = sizeFlag(master.DefaultStateMaxBytes)
	fs.Var(&f.stateMax, "state-max", "bound on the payloads and output the durable state keeps (`SIZE`; the oldest ended jobs go first, then new jobs get busy)")
	f.minFree = sizeFlag(state.DefaultMinFree)
	fs.Var(&f.minFree, "min-free", "free disk `SIZE` the data directory needs: at start, and for each new job")
}

// open opens the durable state for a master of the cluster in dir, or
// returns nil with --in-memory.
func (f *durableFlags) open(ctx context.Context, dir string, bundle *certs.Bundle, log *slog.Logger) (*state.Store, error) {
	if f.inMemory {
		return nil, nil
	}
	d := f.dataDir
	if d == "" {
		d = filepath.Join(dir, "data")
	}
	return state.Open(ctx, state.Config{Dir: d, Cluster: "sha256:" + certs.Fingerprint(bundle.CA),
		MinFree: uint64(f.minFree), Logger: log})
}
