package tunnel

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/portalloc"
	"github.com/p2prc/p2prc/registry"
	"github.com/p2prc/p2prc/registry/secret"
)

// BenchmarkNewConnection opens a connection per request to an echo service
// — dial, 64 bytes there and back, close — directly and through a relay and
// node on loopback (plaintext and TLS), in the same run: compare ns/op.
func BenchmarkNewConnection(b *testing.B) {
	echo := benchEcho(b)
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

// benchEcho echoes each connection until its EOF.
func benchEcho(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// benchTLS returns a relay's TLS configuration with a fresh self-signed
// certificate in dir and a node's pinning it, or nils for plaintext.
func benchTLS(b *testing.B, dir string, secure bool) (*tls.Config, *NodeTLS) {
	if !secure {
		return nil, nil
	}
	cert, _, err := secret.LoadOrCreateCertificate(filepath.Join(dir, secret.CertFileName), "bench")
	if err != nil {
		b.Fatal(err)
	}
	return mux.ServerTLS(cert), &NodeTLS{Fingerprint: mux.Fingerprint(cert.Certificate[0])}
}

// BenchmarkNodeHandshake connects a node to a relay per op — TCP, TLS if
// on, yamux, the control handshake — and hangs up: how fast a relay takes
// nodes back after a restart, plaintext against TLS in the same run.
func BenchmarkNodeHandshake(b *testing.B) {
	for _, secure := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "tls"}[secure]
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			serverTLS, nodeTLS := benchTLS(b, dir, secure)
			addr := benchRelay(b, dir, serverTLS)
			_, key, _ := ed25519.GenerateKey(rand.Reader)
			auth := mux.NodeAuth{Name: "bench", Key: key, Token: benchToken}
			b.ResetTimer()
			defer cpuMeter(b)()
			for range b.N {
				rc, err := dialRelay(context.Background(), addr, nodeTLS, time.Second, time.Second)
				if err != nil {
					b.Fatal(err)
				}
				ym, err := mux.Client(rc.Conn, mux.SessionConfig{})
				if err != nil {
					b.Fatal(err)
				}
				st, err := ym.OpenStream()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := mux.NewConn(st, 0).NodeHandshake(auth, time.Second); err != nil {
					b.Fatal(err)
				}
				ym.Close()
			}
		})
	}
}

var benchToken = []byte("bench")

// cpuMeter starts measuring the process's CPU time (user and system, all of
// relay, node, client and service, which share the process); the returned
// func reports it per op as cpu-ns/op. Unlike wall time, other programs on a
// busy machine barely move it, so it shows what TLS itself costs.
func cpuMeter(b *testing.B) (stop func()) {
	start := cpuTime()
	return func() { b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op") }
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchRelay runs a relay with serverTLS (nil: plaintext) until the
// benchmark ends and returns its control address.
func benchRelay(b *testing.B, dir string, serverTLS *tls.Config) string {
	maps, err := registry.OpenMappings(filepath.Join(dir, registry.MappingFileName))
	if err != nil {
		b.Fatal(err)
	}
	relay, err := NewRelay(RelayConfig{Name: "r", PublicHost: "127.0.0.1", BindHost: "127.0.0.1", Token: benchToken,
		Ports: portalloc.Range{Lo: 47000, Hi: 47999}, Mappings: maps, TLS: serverTLS,
		Limits: Limits{SessionsPerAddress: 1 << 20}})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); relay.Serve(ctx, ln) }()
	b.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}
