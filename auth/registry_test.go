package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln/certs"
)

var t0 = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

func fakeID(n int, role, name, version string) Identity {
	return Identity{Role: role, Name: name, Version: version, Fingerprint: fmt.Sprintf("%064x", n), NotAfter: t0.Add(365 * 24 * time.Hour)}
}

func entryOf(id Identity) Entry {
	return Entry{Fingerprint: id.Fingerprint, Role: id.Role, Name: id.Name, Version: id.Version, Issued: t0, Expires: id.NotAfter}
}

func newTestRegistry(t *testing.T, opts ...RegistryOption) *Registry {
	t.Helper()
	opts = append([]RegistryOption{WithRegistryClock(func() time.Time { return t0.Add(time.Hour) })}, opts...)
	r, err := CreateRegistry(filepath.Join(t.TempDir(), certs.RegistryFile), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustAdd(t *testing.T, r *Registry, ids ...Identity) {
	t.Helper()
	for _, id := range ids {
		if err := r.Add(entryOf(id)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCheckOutcomes(t *testing.T) {
	r := newTestRegistry(t)
	ok := fakeID(1, certs.RoleSlave, "slave-1", "1.0.0")
	revoked := fakeID(2, certs.RoleSlave, "slave-2", "1.0.0")
	revokedFP := fakeID(3, certs.RoleClient, "alice", "1.0.0")
	old := fakeID(4, certs.RoleSlave, "slave-old", "0.9.0")
	admin := fakeID(5, certs.RoleAdmin, "ops", "1.0.0")
	mustAdd(t, r, ok, revoked, revokedFP, old, admin)
	if _, err := r.RevokeName("slave-2", "lost laptop"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RevokeFingerprint(revokedFP.Fingerprint, ""); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Retire(certs.RoleSlave, "0.9.0", "CVE"); err != nil || len(got) != 1 || got[0].Name != "slave-old" {
		t.Fatalf("Retire = %v, %v", got, err)
	}
	// A 0.9.0 slave key issued after retirement: Add refuses it, and an
	// entry written by another tool is refused at Check.
	later := fakeID(6, certs.RoleSlave, "slave-late", "0.9.0")
	if err := r.Add(entryOf(later)); !errors.Is(err, ErrRetired) {
		t.Fatalf("Add after retire: %v", err)
	}
	writeRaw(t, r.Path(), func(ff *fileFormat) { ff.Entries = append(ff.Entries, withStatus(entryOf(later), StatusActive)) })
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	asRole := ok
	asRole.Role = certs.RoleClient
	expired := ok
	expired.NotAfter = t0
	stolenName := ok
	stolenName.Name = "slave-9"
	certVersion := ok
	certVersion.Version = "2.0.0"
	for _, tc := range []struct {
		name  string
		id    Identity
		hello string
		want  error
		msg   string
	}{
		{"ok", ok, "1.0.0", nil, ""},
		{"admin ok", admin, "1.0.0", nil, ""},
		{"unknown", fakeID(99, certs.RoleSlave, "ghost", "1.0.0"), "1.0.0", ErrUnknownKey, "key of slave ghost is not in the registry"},
		{"revoked by name", revoked, "1.0.0", ErrRevoked, "key of slave-2 is revoked"},
		{"revoked by fingerprint", revokedFP, "1.0.0", ErrRevoked, "key of alice is revoked"},
		{"retired", old, "0.9.0", ErrRetired, "version 0.9.0 of slave keys is retired (slave-old)"},
		{"issued after retirement", later, "0.9.0", ErrRetired, "version 0.9.0 of slave keys is retired (slave-late)"},
		{"hello version mismatch", ok, "1.1.0", ErrVersionMismatch, "slave-1 runs version 1.1.0 but its key is for version 1.0.0"},
		{"cert version mismatch", certVersion, "2.0.0", ErrVersionMismatch, ""},
		{"role mismatch", asRole, "1.0.0", ErrRoleMismatch, "key of slave-1 is registered as slave but its certificate says client"},
		{"name mismatch", stolenName, "1.0.0", ErrUnknownKey, ""},
		{"expired", expired, "1.0.0", ErrExpired, "key of slave-1 expired on 2027-01-01"},
	} {
		err := r.Check(tc.id, tc.hello)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: Check = %v, want %v", tc.name, err, tc.want)
			continue
		}
		if tc.msg != "" && err.Error() != tc.msg {
			t.Errorf("%s: message %q, want %q", tc.name, err, tc.msg)
		}
	}
}

func withStatus(e Entry, s Status) Entry { e.Status = s; return e }

// writeRaw edits the registry file as another process would.
func writeRaw(t *testing.T, path string, edit func(*fileFormat)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ff fileFormat
	if err := json.Unmarshal(data, &ff); err != nil {
		t.Fatal(err)
	}
	edit(&ff)
	data, _ = json.MarshalIndent(ff, "", "  ")
	if err := certs.WriteFileAtomic(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRegistryMutations(t *testing.T) {
	r := newTestRegistry(t)
	a := fakeID(1, certs.RoleSlave, "a", "1.0.0")
	mustAdd(t, r, a)
	if err := r.Add(entryOf(fakeID(2, certs.RoleClient, "a", "1.0.0"))); !errors.Is(err, ErrNameTaken) {
		t.Errorf("name collision: %v", err)
	}
	if err := r.Add(entryOf(a)); err == nil {
		t.Error("duplicate fingerprint accepted")
	}
	if err := r.Add(Entry{Fingerprint: "xyz", Role: certs.RoleSlave, Name: "b", Version: "1"}); err == nil {
		t.Error("bad fingerprint accepted")
	}
	if _, err := r.RevokeName("nobody", ""); !errors.Is(err, ErrNoMatch) {
		t.Errorf("revoke unknown name: %v", err)
	}
	got, err := r.RevokeName("a", "gone")
	if err != nil || len(got) != 1 || got[0].Status != StatusRevoked || got[0].Reason != "gone" || got[0].RevokedAt.IsZero() {
		t.Fatalf("RevokeName = %+v, %v", got, err)
	}
	if _, err := r.RevokeFingerprint(a.Fingerprint, ""); !errors.Is(err, ErrNoMatch) {
		t.Errorf("revoke twice: %v", err)
	}
	// The name is free again once revoked.
	mustAdd(t, r, fakeID(3, certs.RoleSlave, "a", "1.0.0"))
	if _, err := r.Retire(certs.RoleSlave, "1.0.0", ""); err != nil {
		t.Fatal(err)
	}
	if again, err := r.Retire(certs.RoleSlave, "1.0.0", ""); err != nil || len(again) != 0 || len(r.Retired()) != 1 {
		t.Errorf("retire twice: %v %v %v", again, err, r.Retired())
	}
	// Another opener sees the same file.
	r2, err := OpenRegistry(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(r2.Entries()) != 2 || r2.Entries()[1].Status != StatusRetired {
		t.Errorf("reopened: %+v", r2.Entries())
	}
	if _, err := OpenRegistry(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("missing registry opened")
	}
	if _, err := CreateRegistry(r.Path()); err == nil {
		t.Error("CreateRegistry overwrote a file")
	}
	fi, _ := os.Stat(r.Path())
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %o", fi.Mode().Perm())
	}
}

func TestWatchRevocationFromAnotherWriter(t *testing.T) {
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&logs, &logMu}, nil))
	r := newTestRegistry(t, WithLogger(log))
	s1 := fakeID(1, certs.RoleSlave, "slave-1", "1.0.0")
	s2 := fakeID(2, certs.RoleSlave, "slave-2", "1.0.0")
	mustAdd(t, r, s1, s2)

	changed := make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Watch(ctx, 20*time.Millisecond, func() { changed <- struct{}{} })
	}()
	t.Cleanup(func() { cancel(); <-done })

	other, err := OpenRegistry(r.Path()) // stands for `kiln certs revoke` in another process
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := other.RevokeName("slave-1", "test"); err != nil {
		t.Fatal(err)
	}
	waitChange(t, changed)
	if d := time.Since(start); d > time.Second {
		t.Errorf("change seen after %s", d)
	}
	denied := r.Denied([]Identity{s1, s2})
	if len(denied) != 1 || !errors.Is(denied[s1.Fingerprint], ErrRevoked) {
		t.Fatalf("Denied = %v", denied)
	}

	// An invalid file keeps the last good state and is logged once.
	if err := certs.WriteFileAtomic(r.Path(), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if err := r.Check(s2, "1.0.0"); err != nil {
		t.Errorf("after invalid file: %v", err)
	}
	if err := r.Check(s1, "1.0.0"); !errors.Is(err, ErrRevoked) {
		t.Errorf("after invalid file: %v", err)
	}
	if err := r.Reload(); !errors.Is(err, ErrInvalid) {
		t.Errorf("Reload of invalid file: %v", err)
	}
	logMu.Lock()
	n := strings.Count(logs.String(), "registry not reloaded")
	logMu.Unlock()
	if n != 1 {
		t.Errorf("logged %d times:\n%s", n, logs.String())
	}
	// Mutations refuse to overwrite a file they cannot parse.
	if _, err := r.RevokeName("slave-2", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("mutation over invalid file: %v", err)
	}
	// Restoring a valid file (with the same content as before) is quiet;
	// retiring through this process also fires onChange.
	if _, err := other.Retire(certs.RoleSlave, "1.0.0", "x"); err != nil {
		// other's cached state is the pre-garbage one; it must refuse too.
		if !errors.Is(err, ErrInvalid) {
			t.Fatal(err)
		}
	}
	writeValid(t, r.Path(), s1, s2)
	waitChange(t, changed)
	if _, err := r.Retire(certs.RoleSlave, "1.0.0", "x"); err != nil {
		t.Fatal(err)
	}
	waitChange(t, changed)
	if d := r.Denied([]Identity{s1, s2}); len(d) != 2 || !errors.Is(d[s2.Fingerprint], ErrRetired) {
		t.Errorf("Denied after retire = %v", d)
	}
}

func writeValid(t *testing.T, path string, ids ...Identity) {
	t.Helper()
	ff := fileFormat{Format: formatVersion, Retired: []RetiredVersion{}}
	for _, id := range ids {
		ff.Entries = append(ff.Entries, withStatus(entryOf(id), StatusActive))
	}
	data, _ := json.Marshal(ff)
	if err := certs.WriteFileAtomic(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func waitChange(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("no change seen within 1 s")
	}
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func TestInvalidFiles(t *testing.T) {
	fp := fmt.Sprintf("%064x", 1)
	e := `{"fingerprint":"` + fp + `","role":"slave","name":"a","version":"1","status":"active","issued":"2027-01-01T00:00:00Z","expires":"2028-01-01T00:00:00Z"}`
	for name, body := range map[string]string{
		"not json":       `{`,
		"format":         `{"format":2,"entries":[],"retired":[]}`,
		"unknown field":  `{"format":1,"entries":[],"retired":[],"extra":1}`,
		"bad status":     `{"format":1,"entries":[` + strings.Replace(e, "active", "paused", 1) + `]}`,
		"bad role":       `{"format":1,"entries":[` + strings.Replace(e, `"slave"`, `"root"`, 1) + `]}`,
		"duplicate fp":   `{"format":1,"entries":[` + e + `,` + strings.Replace(e, `"a"`, `"b"`, 1) + `]}`,
		"duplicate name": `{"format":1,"entries":[` + e + `,` + strings.Replace(e, fp, fmt.Sprintf("%064x", 2), 1) + `]}`,
		"bad retired":    `{"format":1,"entries":[],"retired":[{"role":"slave","version":""}]}`,
	} {
		if _, err := parseState([]byte(body)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if st, err := parseState([]byte(`{"format":1,"entries":[` + e + `]}`)); err != nil || len(st.entries) != 1 {
		t.Errorf("valid file: %v", err)
	}
}

func TestConcurrentCheckDuringReload(t *testing.T) {
	r := newTestRegistry(t)
	ids := make([]Identity, 20)
	for i := range ids {
		ids[i] = fakeID(i+1, certs.RoleSlave, fmt.Sprintf("s%d", i), "1.0.0")
	}
	mustAdd(t, r, ids...)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.Watch(ctx, time.Millisecond, nil) })
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				for _, id := range ids {
					if err := r.Check(id, "1.0.0"); err != nil && !errors.Is(err, ErrRevoked) {
						t.Error(err)
						return
					}
				}
				r.Denied(ids)
				r.Entries()
			}
		})
	}
	other, err := OpenRegistry(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		w := r
		if i%2 == 0 {
			w = other
		}
		if _, err := w.RevokeFingerprint(id.Fingerprint, ""); err != nil {
			t.Fatal(err)
		}
		if err := r.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	if d := r.Denied(ids); len(d) != len(ids) {
		t.Errorf("%d denied, want %d", len(d), len(ids))
	}
}
