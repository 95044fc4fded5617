package transport

import (
	"crypto/sha256"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"kiln/transport/wire"
)

// BenchmarkHandshake measures a client's start: TCP connect, TLS 1.3 with
// client certificates, the yamux session and Hello/Welcome, on loopback.
func BenchmarkHandshake(b *testing.B) {
	ca := newCA(b)
	addr := master(b, ca.serverTLS(b), welcome)
	clientTLS := ca.clientTLS(b, ca)
	var times []time.Duration
	for b.Loop() {
		start := time.Now()
		s, err := Dial(testCtx(b, 5*time.Second), addr, clientTLS, testConfig())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Hello(testCtx(b, 5*time.Second), s, wire.Hello{Role: wire.RoleClient, Name: "bench"}); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
		s.Close()
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(times[len(times)*99/100].Microseconds()), "p99-µs")
}

const benchSize = 256 << 20

// patternReader yields n bytes repeating a 1 MiB pseudo-random block.
type patternReader struct {
	block []byte
	off   int
	left  int64
}

func newPatternReader(n int64) *patternReader {
	return &patternReader{block: randBytes(1<<20, 42), left: n}
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), p.left)]
	n := copy(b, p.block[p.off:])
	p.off = (p.off + n) % len(p.block)
	p.left -= int64(n)
	return n, nil
}

// BenchmarkFileStream256MiB sends 256 MiB on a file stream over mutual TLS
// on loopback, as a sealed payload travels (no SHA-256). Compare with
// BenchmarkRawTLS256MiB, or run BenchmarkFileStreamVsRawTLS.
func BenchmarkFileStream256MiB(b *testing.B) {
	benchFileStream(b, wire.FileHeader{JobID: "J", Kind: wire.FileStdin, Name: "big", Size: benchSize, Sealed: true})
}

// BenchmarkFileStreamSHA256_256MiB is an unsealed file stream: the receiver
// checks the SHA-256 of the header. Compare with BenchmarkRawTLSSHA256_256MiB.
func BenchmarkFileStreamSHA256_256MiB(b *testing.B) {
	sum := sha256.New()
	io.Copy(sum, newPatternReader(benchSize))
	benchFileStream(b, wire.FileHeader{JobID: "J", Kind: wire.FileStdin, Name: "big", Size: benchSize, SHA256: sum.Sum(nil)})
}

func benchFileStream(b *testing.B, hdr wire.FileHeader) {
	c, s := sessionPair(b, "tls", DefaultConfig(), DefaultConfig())
	b.SetBytes(benchSize)
	for b.Loop() {
		fileStreamOnce(b, c, s, hdr)
	}
}

// fileStreamOnce sends one file of benchSize bytes from c to s.
func fileStreamOnce(b *testing.B, c, s *Session, hdr wire.FileHeader) {
	ctx := testCtx(b, 10*time.Minute)
	errc := make(chan error, 1)
	go func() { errc <- c.SendFile(ctx, hdr, newPatternReader(benchSize)) }()
	_, rc, err := s.AcceptFile(ctx)
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.CopyBuffer(io.Discard, rc, make([]byte, copyBuf))
	rc.Close()
	if err != nil || n != benchSize {
		b.Fatalf("received %d bytes: %v", n, err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFileStreamVsRawTLS alternates a 256 MiB file stream (sealed
// kind: no SHA-256, the payload's AEAD authenticates it) and 256 MiB over
// a raw mutual TLS connection, in the same process and run, and reports
// the median of each and their ratio. Alternating keeps the comparison
// fair on a shared, noisy machine.
func BenchmarkFileStreamVsRawTLS(b *testing.B) {
	c, s := sessionPair(b, "tls", DefaultConfig(), DefaultConfig())
	d, a := connPair(b, "tls")
	defer d.Close()
	defer a.Close()
	hdr := wire.FileHeader{JobID: "J", Kind: wire.FileStdin, Name: "big", Size: benchSize, Sealed: true}
	var stream, raw []float64
	mbps := func(d time.Duration) float64 { return float64(benchSize) / d.Seconds() / 1e6 }
	for b.Loop() {
		start := time.Now()
		fileStreamOnce(b, c, s, hdr)
		stream = append(stream, mbps(time.Since(start)))
		start = time.Now()
		rawTLSOnce(b, d, a, io.Discard)
		raw = append(raw, mbps(time.Since(start)))
	}
	slices.Sort(stream)
	slices.Sort(raw)
	ms, mr := stream[len(stream)/2], raw[len(raw)/2]
	b.ReportMetric(ms, "stream-MB/s")
	b.ReportMetric(mr, "rawtls-MB/s")
	b.ReportMetric(ms/mr, "ratio")
}

// BenchmarkRawTLS256MiB sends 256 MiB straight over a mutual TLS connection
// on loopback, with the same buffer sizes: the ceiling for file streams.
func BenchmarkRawTLS256MiB(b *testing.B) { benchRawTLS(b, io.Discard) }

// BenchmarkRawTLSSHA256_256MiB is BenchmarkRawTLS256MiB with the receiver
// hashing the bytes, the same work as a file stream minus yamux. On a
// machine with few cores SHA-256 costs as much as TLS, so this is the
// baseline that isolates the multiplexer's overhead.
func BenchmarkRawTLSSHA256_256MiB(b *testing.B) { benchRawTLS(b, sha256.New()) }

func benchRawTLS(b *testing.B, sink io.Writer) {
	d, a := connPair(b, "tls")
	defer d.Close()
	defer a.Close()
	b.SetBytes(benchSize)
	for b.Loop() {
		rawTLSOnce(b, d, a, sink)
	}
}

// rawTLSOnce sends benchSize bytes from d to a, which copies them to sink.
func rawTLSOnce(b *testing.B, d, a net.Conn, sink io.Writer) {
	errc := make(chan error, 1)
	go func() {
		_, err := io.CopyBuffer(d, io.LimitReader(newPatternReader(benchSize), benchSize), make([]byte, copyBuf))
		errc <- err
	}()
	n, err := io.CopyBuffer(sink, io.LimitReader(a, benchSize), make([]byte, copyBuf))
	if err != nil || n != benchSize {
		b.Fatalf("received %d bytes: %v", n, err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}
