package tunnel

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2prc/p2prc/iptable"
	"github.com/p2prc/p2prc/portalloc"
	"github.com/p2prc/p2prc/registry"
)

// The benchmarks' harness: a relay, a node and services on loopback, each
// stopped when its benchmark ends. Every benchmark measures the direct path
// beside the relayed one in the same run.

var benchToken = []byte("bench")

// benchPorts is where benchmark relays grant ports: above the kernel's
// ephemeral range, away from the tests' ranges.
const benchPorts = "61000-61999"

// benchRelayOpts configure benchRelay; zero values mean plaintext, no
// relay registry or IP table, and one UDP stream per mapping.
type benchRelayOpts struct {
	TLS     *tls.Config
	Relays  *registry.Servers
	IPTable *iptable.File

	UDPStreamPerFlow bool
}

// benchRelay serves a relay on loopback until the benchmark ends and returns
// its control address.
func benchRelay(b *testing.B, o benchRelayOpts) string {
	maps, err := registry.OpenMappings(filepath.Join(b.TempDir(), registry.MappingFileName))
	if err != nil {
		b.Fatal(err)
	}
	rng, _ := portalloc.ParseRange(benchPorts, false)
	relay, err := NewRelay(RelayConfig{Name: "r", PublicHost: "127.0.0.1", BindHost: "127.0.0.1", Token: benchToken,
		Ports: rng, Mappings: maps, TLS: o.TLS, Relays: o.Relays, IPTable: o.IPTable,
		Limits: Limits{SessionsPerAddress: 1 << 20}, udpStreamPerFlow: o.UDPStreamPerFlow})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); relay.Serve(ctx, ln) }()
	b.Cleanup(func() { cancel(); <-served })
	return ln.Addr().String()
}

// benchTunnel starts a relay and a node exposing the TCP service target,
// with TLS on the control connection if secure; it returns the public
// address.
func benchTunnel(b *testing.B, target string, secure bool) string {
	return benchTunnelWith(b, Expose{Network: "tcp", Local: target}, secure, benchRelayOpts{})
}

// benchTunnelFor starts a plaintext relay and a node exposing e; it returns
// the public address. udpStreamPerFlow picks the relay's UDP framing.
func benchTunnelFor(b *testing.B, e Expose, udpStreamPerFlow bool) string {
	return benchTunnelWith(b, e, false, benchRelayOpts{UDPStreamPerFlow: udpStreamPerFlow})
}

func benchTunnelWith(b *testing.B, e Expose, secure bool, o benchRelayOpts) string {
	serverTLS, nodeTLS := benchTLS(b, secure)
	o.TLS = serverTLS
	addr := benchRelay(b, o)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	ready := make(chan Connected, 1)
	node, err := NewNode(NodeConfig{Relay: addr, Token: benchToken, Key: key, TLS: nodeTLS,
		Exposes: []Expose{e},
		OnReady: func(c Connected) { ready <- c }})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	nodeDone := make(chan struct{})
	go func() { defer close(nodeDone); node.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-nodeDone })
	select {
	case c := <-ready:
		return c.Mappings[0].PublicAddr()
	case <-time.After(10 * time.Second):
		b.Fatal("no grant")
	}
	return ""
}

// benchTLS returns a relay's TLS configuration with a fresh self-signed
// certificate and a node's pinning it, or nils for plaintext.
func benchTLS(b *testing.B, secure bool) (*tls.Config, *NodeTLS) {
	if !secure {
		return nil, nil
	}
	cfg, fp := selfSigned(b)
	return cfg, &NodeTLS{Fingerprint: fp}
}

// benchSink discards what a connection sends and answers one byte at EOF.
func benchSink(b *testing.B) string {
	return startService(b, func(c *net.TCPConn) {
		io.Copy(io.Discard, c)
		c.Write([]byte{1})
	})
}

// benchPong answers every 128-byte request with 128 bytes.
func benchPong(b *testing.B) string {
	return startService(b, func(c *net.TCPConn) {
		buf := make([]byte, 128)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
}

// cpuMeter starts measuring the process's CPU time (user and system, all of
// relay, node, client and service, which share the process); the returned
// func reports it per op as cpu-ns/op. Unlike wall time, other programs on a
// busy machine barely move it.
func cpuMeter(b *testing.B) (stop func()) {
	start := cpuTime()
	return func() { b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op") }
}
