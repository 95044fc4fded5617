package transport

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"kiln/transport/wire"
)

// randBytes returns n deterministic pseudo-random bytes.
func randBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(b)
	return b
}

func TestFileStreams(t *testing.T) {
	sizes := []int{0, 1, 1000, 256 << 10, 256<<10 + 1, 3<<20 + 17}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			c, s := sessionPair(t, kind, testConfig(), testConfig())
			ctx := testCtx(t, 20*time.Second)
			errc := make(chan error, 1)
			go func() {
				for i, n := range sizes {
					data := randBytes(n, uint64(i))
					hdr := wire.NewFileHeader("J1", wire.FileSource, "f", data)
					if err := c.SendFile(ctx, hdr, bytes.NewReader(data)); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			for i, n := range sizes {
				hdr, rc, err := s.AcceptFile(ctx)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Fatalf("size %d: %v", n, err)
				}
				if hdr.Size != int64(n) || !bytes.Equal(got, randBytes(n, uint64(i))) {
					t.Fatalf("size %d: got %d bytes, header %+v", n, len(got), hdr)
				}
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// rawFileStream opens a file stream and writes hdr and body as they are,
// like a faulty or hostile peer would, then closes it.
func rawFileStream(t *testing.T, s *Session, hdr wire.FileHeader, body []byte) {
	if st := openRaw(t, s, hdr, body); st != nil {
		st.Close()
	}
}

// openRaw opens a file stream, writes hdr and body, and leaves it open. It
// may run outside the test goroutine, so it reports errors with t.Error.
func openRaw(t *testing.T, s *Session, hdr wire.FileHeader, body []byte) io.Closer {
	st, err := s.mux.OpenStream()
	if err != nil {
		t.Error(err)
		return nil
	}
	e, _ := wire.Encode(wire.MsgFileHeader, 0, &hdr)
	if err := wire.WriteFrame(st, e); err != nil {
		t.Error(err)
	}
	if _, err := st.Write(body); err != nil {
		t.Error(err)
	}
	return st
}

func TestFileStreamDamage(t *testing.T) {
	data := randBytes(100<<10, 7)
	good := wire.NewFileHeader("J1", wire.FileStdin, "in", data)
	corrupt := bytes.Clone(data)
	corrupt[5000] ^= 1
	tests := []struct {
		name string
		hdr  wire.FileHeader
		body []byte
		want error
	}{
		{"truncated", good, data[:len(data)-1], ErrShortFile},
		{"empty body", good, nil, ErrShortFile},
		{"corrupted", good, corrupt, ErrChecksum},
		{"wrong sum", wire.NewFileHeader("J1", wire.FileStdin, "in", corrupt), data, ErrChecksum},
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			c, s := sessionPair(t, kind, testConfig(), testConfig())
			ctx := testCtx(t, 10*time.Second)
			for _, tt := range tests {
				go rawFileStream(t, c, tt.hdr, tt.body)
				_, rc, err := s.AcceptFile(ctx)
				if err != nil {
					t.Fatal(err)
				}
				_, err = io.ReadAll(rc)
				rc.Close()
				if !errors.Is(err, tt.want) {
					t.Errorf("%s: ReadAll = %v, want %v", tt.name, err, tt.want)
				}
			}
			// A stream with a bad header is closed and reported; the next
			// one is accepted normally.
			go rawFileStream(t, c, wire.FileHeader{Size: -1, SHA256: good.SHA256}, nil)
			if _, _, err := s.AcceptFile(ctx); !errors.Is(err, wire.ErrMalformed) || errors.Is(err, ErrClosed) {
				t.Errorf("bad header: AcceptFile = %v, want ErrMalformed", err)
			}
			go c.SendFile(ctx, good, bytes.NewReader(data))
			_, rc, err := s.AcceptFile(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("after a bad stream: %d bytes, %v", len(got), err)
			}
			rc.Close()
		})
	}
}

func TestSendFileChecksLength(t *testing.T) {
	c, s := sessionPair(t, "tcp", testConfig(), testConfig())
	ctx := testCtx(t, 10*time.Second)
	data := randBytes(5000, 1)
	hdr := wire.NewFileHeader("J", wire.FileSource, "a.c", data)
	for _, tt := range []struct {
		name string
		r    io.Reader
		recv error
	}{
		{"short", bytes.NewReader(data[:4000]), ErrShortFile},
		{"one byte short", bytes.NewReader(data[:4999]), ErrShortFile},
		{"long", bytes.NewReader(append(bytes.Clone(data), 'x')), ErrShortFile},
		{"empty but one byte", bytes.NewReader([]byte{1}), ErrShortFile},
	} {
		h := hdr
		if tt.name == "empty but one byte" {
			h = wire.NewFileHeader("J", wire.FileSource, "a.c", nil)
		}
		errc := make(chan error, 1)
		go func() { errc <- c.SendFile(ctx, h, tt.r) }()
		_, rc, err := s.AcceptFile(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, rerr := io.ReadAll(rc)
		rc.Close()
		if err := <-errc; !errors.Is(err, ErrFileSize) {
			t.Errorf("%s: SendFile = %v, want ErrFileSize", tt.name, err)
		}
		// The receiver never gets a complete file from a reader of the wrong length.
		if h.Size == 0 {
			if rerr != nil {
				t.Errorf("%s: receiver: %v", tt.name, rerr)
			}
			continue
		}
		if !errors.Is(rerr, tt.recv) {
			t.Errorf("%s: receiver ReadAll = %v, want %v", tt.name, rerr, tt.recv)
		}
	}
	bad := hdr
	bad.SHA256 = nil
	if err := c.SendFile(ctx, bad, bytes.NewReader(data)); !errors.Is(err, wire.ErrMalformed) {
		t.Errorf("SendFile without sha256 = %v, want ErrMalformed", err)
	}
}

func TestHashFile(t *testing.T) {
	data := randBytes(300<<10, 3)
	n, sum, err := HashFile(bytes.NewReader(data))
	want := sha256.Sum256(data)
	if err != nil || n != int64(len(data)) || !bytes.Equal(sum, want[:]) {
		t.Fatalf("HashFile = %d, %x, %v", n, sum, err)
	}
}

// TestFileDoesNotBlockControl fills a file stream's window while the
// receiver is not reading it, and checks control messages still flow.
func TestFileDoesNotBlockControl(t *testing.T) {
	cfg := testConfig()
	cfg.MaxStreamWindow = 256 << 10
	c, s := sessionPair(t, "tls", cfg, cfg)
	ctx := testCtx(t, 10*time.Second)
	data := randBytes(4<<20, 9)
	errc := make(chan error, 1)
	go func() {
		errc <- c.SendFile(ctx, wire.NewFileHeader("J", wire.FileStdin, "in", data), bytes.NewReader(data))
	}()
	_, rc, err := s.AcceptFile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	for i := range 20 {
		if err := c.Send(wire.MsgLoad, uint64(i), &wire.Load{Running: i}); err != nil {
			t.Fatal(err)
		}
		if e, err := s.Recv(); err != nil || e.ID != uint64(i) {
			t.Fatalf("control message %d while a file waits: %v %v", i, e, err)
		}
	}
	select {
	case err := <-errc:
		t.Fatalf("SendFile finished before the file was read: %v", err)
	default:
	}
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file: %d bytes, %v", len(got), err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestFileContexts(t *testing.T) {
	cfg := testConfig()
	cfg.MaxStreamWindow = 256 << 10
	c, s := sessionPair(t, "tcp", cfg, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, _, err := s.AcceptFile(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AcceptFile with nothing sent = %v, want deadline exceeded", err)
	}
	// The receiver accepts but never reads: the sender's ctx ends the wait.
	data := randBytes(2<<20, 4)
	errc := make(chan error, 1)
	sctx, scancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer scancel()
	go func() {
		errc <- c.SendFile(sctx, wire.NewFileHeader("J", wire.FileStdin, "in", data), bytes.NewReader(data))
	}()
	_, rc, err := s.AcceptFile(testCtx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("SendFile to a stalled reader = %v, want deadline exceeded", err)
	}
	if _, err := io.ReadAll(rc); !errors.Is(err, ErrShortFile) {
		t.Errorf("receiver of an aborted file: %v, want ErrShortFile", err)
	}
	rc.Close()
	// Close unblocks a Read waiting for bytes that never come.
	st := openRaw(t, c, wire.NewFileHeader("J", "x", "y", data[:10]), nil)
	defer st.Close()
	_, rc, err = s.AcceptFile(testCtx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(rc)
		readErr <- err
	}()
	time.Sleep(50 * time.Millisecond)
	rc.Close()
	select {
	case err := <-readErr:
		if err == nil {
			t.Error("Read after Close succeeded")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
	// A stream that never sends its header times out.
	st2, err := c.mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	hctx, hcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer hcancel()
	if _, _, err := s.AcceptFile(hctx); err == nil || errors.Is(err, ErrClosed) {
		t.Errorf("AcceptFile of a silent stream = %v, want a header timeout", err)
	}
	c.Close()
	if _, _, err := s.AcceptFile(testCtx(t, 5*time.Second)); !errors.Is(err, ErrClosed) {
		t.Errorf("AcceptFile on a closed session = %v, want ErrClosed", err)
	}
	if err := c.SendFile(testCtx(t, time.Second), wire.NewFileHeader("J", "x", "y", nil), bytes.NewReader(nil)); !errors.Is(err, ErrClosed) {
		t.Errorf("SendFile on a closed session = %v, want ErrClosed", err)
	}
}

// TestDiscardFile: a receiver that stops reading a file and discards it
// lets go of the stream once the sender is done, instead of keeping what
// the sender pushed buffered (up to twice the window) for
// StreamCloseTimeout; the sender is not blocked meanwhile.
func TestDiscardFile(t *testing.T) {
	c, s := sessionPair(t, "tls", testConfig(), testConfig())
	ctx := testCtx(t, 20*time.Second)
	data := randBytes(4<<20, 7) // four windows
	errc := make(chan error, 1)
	go func() {
		errc <- c.SendFile(ctx, wire.NewFileHeader("1", wire.FileSource, "a.c", data), bytes.NewReader(data))
	}()
	hdr, body, err := s.AcceptFile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(body, make([]byte, 1000)); err != nil || hdr.Size != int64(len(data)) {
		t.Fatal(err)
	}
	DiscardFile(body, 10*time.Second)
	if err := <-errc; err != nil {
		t.Fatalf("sender: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.mux.NumStreams() > 1 { // the control stream stays
		if time.Now().After(deadline) {
			t.Fatalf("%d streams still open after DiscardFile", s.mux.NumStreams())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
