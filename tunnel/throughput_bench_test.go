package tunnel

import (
	"io"
	"net"
	"testing"
)

// BenchmarkTCPOneStream moves bytes one way over one TCP connection to a
// sink, directly and through a relay and node on loopback (plaintext and
// TLS), in the same run: compare the MB/s figures.
func BenchmarkTCPOneStream(b *testing.B) {
	sink := benchSink(b)
	b.Run("direct", func(b *testing.B) { benchStream(b, sink) })
	b.Run("relay", func(b *testing.B) { benchStream(b, benchTunnel(b, sink, false)) })
	b.Run("relay-tls", func(b *testing.B) { benchStream(b, benchTunnel(b, sink, true)) })
}

func benchStream(b *testing.B, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 128<<10)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	stop := cpuMeter(b)
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	// Wait for the sink to have everything: it echoes one byte at EOF.
	c.(*net.TCPConn).CloseWrite()
	io.ReadFull(c, buf[:1])
	stop()
}

// BenchmarkRequestResponse sends a small request and waits for a small
// reply on one kept-alive connection, directly and through relay and node
// in the same run: compare the ns/op (latency per exchange).
func BenchmarkRequestResponse(b *testing.B) {
	pong := benchPong(b)
	b.Run("direct", func(b *testing.B) { benchExchange(b, pong) })
	b.Run("relay", func(b *testing.B) { benchExchange(b, benchTunnel(b, pong, false)) })
	b.Run("relay-tls", func(b *testing.B) { benchExchange(b, benchTunnel(b, pong, true)) })
}

func benchExchange(b *testing.B, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req, resp := make([]byte, 128), make([]byte, 128)
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			b.Fatal(err)
		}
	}
}
