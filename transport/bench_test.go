package transport

import (
	"crypto/sha256"
	"io"
	"net"
	"slices"
	"syscall"
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
// kind: no SHA-256, the payload's AEAD authenticates it), the same stream
// over TLS without [WrapTCP] (the path before write batching) and 256 MiB
// over a raw mutual TLS connection, in the same process and run, and
// reports the median throughput of each, their ratios, and the ratio of
// the process's CPU time (user+system, both ends) per byte: raw over
// stream. Alternating keeps the comparison fair on a shared, noisy
// machine; the CPU ratio is the steadier figure when other processes
// compete for the cores.
func BenchmarkFileStreamVsRawTLS(b *testing.B) {
	c, s := sessionPair(b, "tls", DefaultConfig(), DefaultConfig())
	pc, ps := sessionPair(b, "tls-plain", DefaultConfig(), DefaultConfig())
	d, a := connPair(b, "tls-plain")
	defer d.Close()
	defer a.Close()
	hdr := wire.FileHeader{JobID: "J", Kind: wire.FileStdin, Name: "big", Size: benchSize, Sealed: true}
	var stream, plain, raw []float64
	var cpuStream, cpuPlain, cpuRaw time.Duration
	mbps := func(d time.Duration) float64 { return float64(benchSize) / d.Seconds() / 1e6 }
	timed := func(cpu *time.Duration, f func()) float64 {
		start, c0 := time.Now(), processCPU()
		f()
		*cpu += processCPU() - c0
		return mbps(time.Since(start))
	}
	for b.Loop() {
		stream = append(stream, timed(&cpuStream, func() { fileStreamOnce(b, c, s, hdr) }))
		raw = append(raw, timed(&cpuRaw, func() { rawTLSOnce(b, d, a, io.Discard) }))
		plain = append(plain, timed(&cpuPlain, func() { fileStreamOnce(b, pc, ps, hdr) }))
	}
	ms, mp, mr := median(stream), median(plain), median(raw)
	b.ReportMetric(ms, "stream-MB/s")
	b.ReportMetric(mp, "unbatched-MB/s")
	b.ReportMetric(mr, "rawtls-MB/s")
	b.ReportMetric(ms/mr, "ratio")
	b.ReportMetric(mp/mr, "unbatched-ratio")
	b.ReportMetric(cpuRaw.Seconds()/cpuStream.Seconds(), "cpu-ratio")
	b.ReportMetric(cpuRaw.Seconds()/cpuPlain.Seconds(), "unbatched-cpu-ratio")
}

// median returns the median of xs, which it sorts.
func median(xs []float64) float64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// processCPU returns the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
	d, a := connPair(b, "tls-plain")
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
