package tunnel

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"time"

	"github.com/p2prc/p2prc/mux"
)

// BenchmarkNewConnection opens a connection per request to an echo service
// — dial, 64 bytes there and back, close — directly and through a relay and
// node on loopback (plaintext and TLS), in the same run: compare ns/op.
func BenchmarkNewConnection(b *testing.B) {
	echo := startEcho(b)
	b.Run("direct", func(b *testing.B) { benchConnect(b, echo) })
	b.Run("relay", func(b *testing.B) { benchConnect(b, benchTunnel(b, echo, false)) })
	b.Run("relay-tls", func(b *testing.B) { benchConnect(b, benchTunnel(b, echo, true)) })
}

func benchConnect(b *testing.B, addr string) {
	req, resp := make([]byte, 64), make([]byte, 64)
	b.ResetTimer()
	defer cpuMeter(b)()
	for range b.N {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkNodeHandshake connects a node to a relay per op — TCP, TLS if
// on, yamux, the control handshake — and hangs up: how fast a relay takes
// nodes back after a restart, plaintext against TLS in the same run.
func BenchmarkNodeHandshake(b *testing.B) {
	for _, secure := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "tls"}[secure]
		b.Run(name, func(b *testing.B) {
			serverTLS, nodeTLS := benchTLS(b, secure)
			addr := benchRelay(b, benchRelayOpts{TLS: serverTLS})
			_, key, _ := ed25519.GenerateKey(rand.Reader)
			auth := mux.NodeAuth{Name: "bench", Key: key, Token: benchToken}
			b.ResetTimer()
			defer cpuMeter(b)()
			for range b.N {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				rc, err := secureRelayConn(context.Background(), c, addr, nodeTLS, time.Second)
				if err != nil {
					b.Fatal(err)
				}
				ym, err := mux.Client(mux.NewWire(rc.Conn), mux.SessionConfig{})
				if err != nil {
					b.Fatal(err)
				}
				st, err := ym.OpenStream()
				if err != nil {
					b.Fatal(err)
				}
				auth.Binding = mux.ChannelBinding(rc.Conn) // the handshake is bound to this TLS connection
				if _, err := mux.NewConn(st, 0).NodeHandshake(auth, time.Second); err != nil {
					b.Fatal(err)
				}
				ym.Close()
			}
		})
	}
}
