package tunnel

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/yamux"

	"github.com/p2prc/p2prc/mux"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(b *testing.B) (*net.TCPConn, *net.TCPConn) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *net.TCPConn, 1)
	go func() {
		c, _ := ln.AcceptTCP()
		accepted <- c
	}()
	c, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		b.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		b.Fatal("accept failed")
	}
	b.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// sessionPair returns a node (client) and relay (server) yamux session over
// loopback TCP, each on a Wire, as relay and node run them.
func sessionPair(b *testing.B) (client, server *yamux.Session) {
	c, s := tcpPair(b)
	client, err := mux.Client(mux.NewWire(c), mux.SessionConfig{})
	if err != nil {
		b.Fatal(err)
	}
	server, err = mux.Server(mux.NewWire(s), mux.SessionConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// zeros reads as an endless run of zero bytes, at no cost.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { return len(p), nil }

// BenchmarkStreamCopy moves bytes one way with copyAdaptive, as a pipe does:
// over a plain TCP connection (the baseline) and over one yamux stream on
// a Wire. Each op is 64 KiB; compare MB/s, and allocs/op for the cost of
// yamux's frames.
func BenchmarkStreamCopy(b *testing.B) {
	const chunk = 64 << 10
	run := func(b *testing.B, dst io.WriteCloser, src io.Reader, shrink *yamux.Stream) {
		b.SetBytes(chunk)
		b.ReportAllocs()
		b.ResetTimer()
		errc := make(chan error, 1)
		go func() {
			errc <- copyAdaptive(dst, io.LimitReader(zeros{}, int64(b.N)*chunk), nil, nil)
			dst.Close()
		}()
		if err := copyAdaptive(io.Discard, src, shrink, nil); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
	b.Run("tcp", func(b *testing.B) {
		c, s := tcpPair(b)
		run(b, c, s, nil)
	})
	b.Run("yamux", func(b *testing.B) {
		client, server := sessionPair(b)
		accepted := make(chan *yamux.Stream, 1)
		go func() {
			st, _ := server.AcceptStream()
			accepted <- st
		}()
		st, err := client.OpenStream()
		if err != nil {
			b.Fatal(err)
		}
		st.Write([]byte{0}) // the peer learns of a stream from its first frame
		peer := <-accepted
		if peer == nil {
			b.Fatal("accept failed")
		}
		io.ReadFull(peer, make([]byte, 1))
		run(b, st, peer, peer)
	})
}

// BenchmarkRequestBurst runs 32 request/response loops at once, 128 bytes
// each way, over 32 TCP connections (the baseline) and over 32 streams of
// one yamux session on a Wire, where frames ready at the same moment share
// a write. ns/op is per exchange.
func BenchmarkRequestBurst(b *testing.B) {
	const loops, size = 32, 128
	run := func(b *testing.B, conns []io.ReadWriter) {
		b.ReportAllocs()
		b.ResetTimer()
		var left atomic.Int64
		left.Store(int64(b.N))
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, size)
				for left.Add(-1) >= 0 {
					if _, err := c.Write(buf); err != nil {
						return
					}
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	echo := func(c io.ReadWriter) {
		buf := make([]byte, size)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}
	b.Run("tcp", func(b *testing.B) {
		var conns []io.ReadWriter
		for range loops {
			c, s := tcpPair(b)
			go echo(s)
			conns = append(conns, c)
		}
		run(b, conns)
	})
	b.Run("yamux", func(b *testing.B) {
		client, server := sessionPair(b)
		go func() {
			for {
				st, err := server.AcceptStream()
				if err != nil {
					return
				}
				go echo(st)
			}
		}()
		var conns []io.ReadWriter
		for range loops {
			st, err := client.OpenStream()
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, st)
		}
		run(b, conns)
	})
}
