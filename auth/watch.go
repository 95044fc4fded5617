package auth

import (
	"context"
	"os"
	"time"
)

// DefaultPoll is the registry poll interval the master uses.
const DefaultPoll = 200 * time.Millisecond

// rehashEvery bounds how long a change invisible to stat (same inode, size
// and modification time) can go unnoticed.
const rehashEvery = 2 * time.Second

// Watch polls the registry file every interval (default [DefaultPoll]) and
// reloads it when it changed (inode, size or modification time, and then
// content hash). After every change of the registry, from the file or from
// a mutation in this process, it calls onChange (if not nil) from its own
// goroutine. An unreadable or invalid file keeps the last good state and is
// logged once. Watch blocks until ctx is done.
func (r *Registry) Watch(ctx context.Context, interval time.Duration, onChange func()) {
	if interval <= 0 {
		interval = DefaultPoll
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	last := r.generation()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.poll()
		if g := r.generation(); g != last {
			last = g
			if onChange != nil {
				onChange()
			}
		}
	}
}

func (r *Registry) generation() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.gen
}

// Refresh re-reads the file now if it looks changed since the last read
// (a stat, and a read only when needed), as the watcher does on its tick.
// The master calls it before refusing an unknown key, which may have been
// issued since the last tick. Failures keep the last good state.
func (r *Registry) Refresh() { r.poll() }

// poll reloads the file if it looks changed, logging failures once.
func (r *Registry) poll() {
	fi, statErr := os.Stat(r.path)
	r.mu.Lock()
	defer r.mu.Unlock()
	if statErr == nil && r.unchanged(fi) {
		return
	}
	err := statErr
	if err == nil {
		err = r.loadLocked(false)
	}
	switch {
	case err != nil && err.Error() != r.lastErr:
		r.lastErr = err.Error()
		r.log.Warn("registry not reloaded; keeping the last good state", "path", r.path, "err", err)
	case err == nil && r.lastErr != "":
		r.lastErr = ""
		r.log.Info("registry reloaded", "path", r.path)
	}
}

// unchanged reports whether fi matches the file last read and the content
// was hashed recently enough to trust stat alone.
func (r *Registry) unchanged(fi os.FileInfo) bool {
	return r.fi != nil && r.lastErr == "" && os.SameFile(fi, r.fi) &&
		fi.Size() == r.fi.Size() && fi.ModTime().Equal(r.fi.ModTime()) &&
		time.Since(r.checked) < rehashEvery
}
