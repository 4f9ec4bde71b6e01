package status

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2prc/p2prc/portalloc"
	"github.com/p2prc/p2prc/registry"
	"github.com/p2prc/p2prc/tunnel"
)

// A relay and a node in process, on 127.0.0.1 only, each with its metrics
// and status server, as `p2prc relay --metrics` and `p2prc node --metrics`
// run them.

var testToken = []byte("status-test-token")

var testBuild = Build{Version: "v9.9.9", Commit: "0123abc", GoVersion: "go1.26"}

type served struct {
	metrics *Metrics
	url     string // the status server's base URL, "http://127.0.0.1:N"
}

// serveStatus starts a status server for src on a loopback port.
func serveStatus(t *testing.T, m *Metrics, src Source) served {
	t.Helper()
	m.Watch(src)
	srv, err := Start("127.0.0.1:0", Handler(m, src, "p2prc test"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return served{metrics: m, url: "http://" + srv.Addr().String()}
}

// freeRange finds n consecutive free TCP ports on 127.0.0.1 in 7000-9999:
// below Linux's ephemeral range and apart from the other packages' tests,
// which run at the same time (portalloc 10000-14999, cmd/p2prc
// 15000-19999, tunnel 20000-32000).
func freeRange(t *testing.T, n int) portalloc.Range {
	t.Helper()
	for range 200 {
		lo := 7000 + mrand.IntN(3000-n)
		free := true
		for p := lo; p < lo+n && free; p++ {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				free = false
				continue
			}
			ln.Close()
		}
		if free {
			return portalloc.Range{Lo: lo, Hi: lo + n - 1}
		}
	}
	t.Fatal("no free port range")
	return portalloc.Range{}
}

// startRelay runs a relay with metrics; it returns the relay's control
// address and its status server.
func startRelay(t *testing.T) (string, served) {
	t.Helper()
	maps, err := registry.OpenMappings(filepath.Join(t.TempDir(), registry.MappingFileName))
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(testBuild)
	r, err := tunnel.NewRelay(tunnel.RelayConfig{
		Name: "status-relay", PublicHost: "127.0.0.1", BindHost: "127.0.0.1", Token: testToken,
		Ports: freeRange(t, 20), Mappings: maps, Observer: m,
		HandshakeTimeout: 2 * time.Second, PeerTimeout: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Serve(ctx, ln)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String(), serveStatus(t, m, r)
}

// nodeOpts configure startNode.
type nodeOpts struct {
	name, local string
	token       []byte // zero: the right one
	wantPort    int
}

// startNode runs a node with metrics exposing o.local, and waits for its
// grant, whose public port it returns. A node the relay refuses returns 0
// once Run has returned.
func startNode(t *testing.T, relay string, o nodeOpts) (int, served) {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	m := NewMetrics(testBuild)
	token := testToken
	if o.token != nil {
		token = o.token
	}
	ready := make(chan tunnel.Connected, 8)
	n, err := tunnel.NewNode(tunnel.NodeConfig{
		Relay: relay, Name: o.name, Key: key, Token: token, Observer: m,
		Exposes:     []tunnel.Expose{{Network: "tcp", Local: o.local, RemotePort: o.wantPort}},
		DialTimeout: 2 * time.Second, HandshakeTimeout: 2 * time.Second, PeerTimeout: 3 * time.Second,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		OnReady: func(c tunnel.Connected) {
			select {
			case ready <- c:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan error, 1)
	go func() { exited <- n.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-exited }) }
	t.Cleanup(stop)
	st := serveStatus(t, m, n)
	select {
	case c := <-ready:
		if len(c.Mappings) != 1 {
			t.Fatalf("granted %+v", c.Mappings)
		}
		return c.Mappings[0].BlindPort, st
	case err := <-exited:
		exited <- err
		return 0, st
	case <-time.After(10 * time.Second):
		t.Fatal("the node got no grant in time")
	}
	return 0, st
}

// startEcho runs a service that sends back what it reads.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				if _, err := io.Copy(c, c); err == nil {
					c.(*net.TCPConn).CloseWrite()
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// dialVisitor connects to a public port of the relay, as a visitor would;
// the connection is closed at cleanup and has a deadline that bounds the test.
func dialVisitor(t *testing.T, port int) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(time.Minute))
	return c.(*net.TCPConn)
}

// get fetches url and returns the body; the test fails on any error.
func get(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", url, resp.Status, err)
	}
	return string(b)
}

// sample returns the value of the one series of family name whose labels
// include every label in want (`key="value"` pairs), from a /metrics page.
func sample(t *testing.T, page, name string, want ...string) float64 {
	t.Helper()
	var found []float64
	for _, line := range strings.Split(page, "\n") {
		if strings.HasPrefix(line, "#") || !strings.HasPrefix(line, name) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		series, value := line[:i], line[i+1:]
		if series != name && !strings.HasPrefix(series, name+"{") {
			continue
		}
		match := true
		for _, w := range want {
			match = match && strings.Contains(series, w)
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		found = append(found, v)
	}
	if len(found) != 1 {
		t.Fatalf("%d series of %s with %v, want 1; metrics:\n%s", len(found), name, want, page)
	}
	return found[0]
}
