package tunnel

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2prc/p2prc/portalloc"
	"github.com/p2prc/p2prc/registry"
)

// BenchmarkTCPOneStream moves bytes one way over one TCP connection to a
// sink, directly and through a relay and node on loopback, in the same run:
// compare the two MB/s figures.
func BenchmarkTCPOneStream(b *testing.B) {
	sink := benchSink(b)
	b.Run("direct", func(b *testing.B) { benchStream(b, sink) })
	b.Run("relay", func(b *testing.B) { benchStream(b, benchTunnel(b, sink)) })
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
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	// Wait for the sink to have everything: it echoes one byte at EOF.
	c.(*net.TCPConn).CloseWrite()
	io.ReadFull(c, buf[:1])
}

// benchSink accepts connections, discards what they send, and answers one
// byte at EOF.
func benchSink(b *testing.B) string {
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
				io.Copy(io.Discard, c)
				c.Write([]byte{1})
			}()
		}
	}()
	return ln.Addr().String()
}

// benchTunnel starts a relay and a node exposing target; it returns the
// public address.
func benchTunnel(b *testing.B, target string) string {
	return benchTunnelFor(b, Expose{Network: "tcp", Local: target}, false)
}

// benchTunnelFor starts a relay and a node exposing e; it returns the public
// address. udpStreamPerFlow picks the relay's UDP framing.
func benchTunnelFor(b *testing.B, e Expose, udpStreamPerFlow bool) string {
	dir := b.TempDir()
	maps, err := registry.OpenMappings(filepath.Join(dir, registry.MappingFileName))
	if err != nil {
		b.Fatal(err)
	}
	rng, _ := portalloc.ParseRange("47000-47999", false)
	token := []byte("bench")
	relay, err := NewRelay(RelayConfig{Name: "r", PublicHost: "127.0.0.1", BindHost: "127.0.0.1", Token: token, Ports: rng, Mappings: maps,
		udpStreamPerFlow: udpStreamPerFlow})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	relayDone := make(chan struct{})
	go func() { defer close(relayDone); relay.Serve(ctx, ln) }()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	ready := make(chan Connected, 1)
	node, err := NewNode(NodeConfig{Relay: ln.Addr().String(), Token: token, Key: key,
		Exposes: []Expose{e},
		OnReady: func(c Connected) { ready <- c }})
	if err != nil {
		b.Fatal(err)
	}
	nodeDone := make(chan struct{})
	go func() { defer close(nodeDone); node.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-nodeDone; <-relayDone })
	select {
	case c := <-ready:
		return c.Mappings[0].PublicAddr()
	case <-time.After(10 * time.Second):
		b.Fatal("no grant")
	}
	return ""
}
