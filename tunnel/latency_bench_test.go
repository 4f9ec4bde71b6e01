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

	"github.com/p2prc/p2prc/iptable"
	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/registry"
)

// BenchmarkRoundTrip is what a latency sample costs: one byte echoed over a
// TCP connection (the network's own round trip), and a ping answered by a
// pong on the control stream of a relay (what p2prc stores as the relay's
// latency), in the same run. Their ratio is the measurement's overhead.
func BenchmarkRoundTrip(b *testing.B) {
	b.Run("direct", func(b *testing.B) {
		c, err := net.Dial("tcp", startEcho(b))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		buf := []byte{1}
		for b.Loop() {
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("control-ping", func(b *testing.B) {
		addr := benchRelay(b, benchRelayOpts{})
		n, err := NewQueryNode(NodeConfig{Token: benchToken})
		if err != nil {
			b.Fatal(err)
		}
		c, err := n.connect(b.Context(), addr, true)
		if err != nil {
			b.Fatal(err)
		}
		defer c.close()
		var seq uint64
		for b.Loop() {
			seq++
			if err := c.ctrl.Send(&mux.Ping{Seq: seq}); err != nil {
				b.Fatal(err)
			}
			if err := awaitPong(c.ctrl, seq); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkConnectUntilReady is a node's start, from dialling to ready:
// handshake, latency pings and one grant ("bare"), and the same with the
// relay registry and IP table kept on both sides, which adds the exchange
// and the files' atomic writes ("with-files").
func BenchmarkConnectUntilReady(b *testing.B) {
	service := startEcho(b)
	for _, withFiles := range []bool{false, true} {
		name := "bare"
		if withFiles {
			name = "with-files"
		}
		b.Run(name, func(b *testing.B) {
			var relays *registry.Servers
			var table *iptable.File
			cfg := NodeConfig{Token: benchToken, Exposes: []Expose{{Network: "tcp", Local: service}}}
			if withFiles {
				relays, table = benchFiles(b)
				cfg.Relays, cfg.IPTable = benchFiles(b)
			}
			cfg.Relay = benchRelay(b, benchRelayOpts{Relays: relays, IPTable: table})
			_, cfg.Key, _ = ed25519.GenerateKey(rand.Reader)
			for b.Loop() {
				benchReady(b, cfg)
			}
		})
	}
}

// benchReady runs a node until it is ready, then stops it.
func benchReady(b *testing.B, cfg NodeConfig) {
	ready := make(chan struct{}, 1)
	cfg.OnReady = func(Connected) { ready <- struct{}{} }
	node, err := NewNode(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- node.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		b.Fatalf("node stopped: %v", err)
	case <-time.After(10 * time.Second):
		b.Fatal("node not ready")
	}
	cancel()
	<-done
}

func benchFiles(b *testing.B) (*registry.Servers, *iptable.File) {
	dir := b.TempDir()
	relays, err := registry.OpenServers(filepath.Join(dir, registry.ServerFileName))
	if err != nil {
		b.Fatal(err)
	}
	table, err := iptable.Open(filepath.Join(dir, iptable.FileName))
	if err != nil {
		b.Fatal(err)
	}
	return relays, table
}
