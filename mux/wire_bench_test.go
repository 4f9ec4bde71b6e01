package mux

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
)

// discardingConn returns a loopback TCP connection whose far end discards
// everything it reads; the benchmark's cleanup closes both.
func discardingConn(b *testing.B) *net.TCPConn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		io.Copy(io.Discard, c)
		c.Close()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(); <-done })
	return c.(*net.TCPConn)
}

// BenchmarkWireDataFrame writes yamux data frames of several sizes to a
// loopback connection the way yamux's send loop does (header, then body),
// through Wire and, as the baseline, straight to the connection as two
// writes. Compare the MB/s and allocs/op of each pair.
func BenchmarkWireDataFrame(b *testing.B) {
	for _, size := range []int{128, 4 << 10, 32 << 10, 256 << 10} {
		body := make([]byte, size)
		hdr := yamuxHeader(yamuxTypeData, uint32(size))
		b.Run(fmt.Sprintf("two-writes/%d", size), func(b *testing.B) {
			c := discardingConn(b)
			b.SetBytes(int64(len(hdr) + size))
			b.ReportAllocs()
			for b.Loop() {
				c.Write(hdr)
				c.Write(body)
			}
		})
		b.Run(fmt.Sprintf("wire/%d", size), func(b *testing.B) {
			w := NewWire(discardingConn(b))
			defer w.Close()
			b.SetBytes(int64(len(hdr) + size))
			b.ReportAllocs()
			for b.Loop() {
				w.Write(hdr)
				w.Write(body)
			}
		})
	}
}

// BenchmarkStreamHeader encodes and decodes the header that opens every
// visitor stream: its cost is paid once per visitor connection.
func BenchmarkStreamHeader(b *testing.B) {
	h := StreamHeader{Kind: KindTCP, Port: 30001, Visitor: netip.MustParseAddrPort("[2001:db8::7]:51234")}
	buf := make([]byte, 0, 64)
	r := new(byteReader)
	b.ReportAllocs()
	for b.Loop() {
		enc, err := h.AppendBinary(buf[:0])
		if err != nil {
			b.Fatal(err)
		}
		r.b = enc
		if _, err := ReadStreamHeader(r); err != nil {
			b.Fatal(err)
		}
	}
}

// byteReader reads a slice without allocating, unlike bytes.NewReader in a
// loop.
type byteReader struct{ b []byte }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}
