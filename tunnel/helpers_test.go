package tunnel

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/p2prc/p2prc/iptable"
	"github.com/p2prc/p2prc/portalloc"
	"github.com/p2prc/p2prc/registry"
)

// The harness: a relay and nodes in process, on 127.0.0.1 only, with short
// timeouts so that every test is bounded in time.

var testToken = []byte("tunnel-test-token")

// stopTimeout bounds how long Serve or Run may take to return once cancelled.
const stopTimeout = 10 * time.Second

// leakCheck records the number of goroutines now and, when the test ends
// (after every cleanup registered later), fails with all stacks unless the
// count is back to it within ~5 s.
func leakCheck(t *testing.T) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() { assertGoroutines(t, base) })
}

// assertGoroutines polls until no more than base goroutines run.
func assertGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("goroutine leak: %d running, %d before the test; all stacks:\n%s", n, base, allStacks())
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func allStacks() []byte {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return buf[:n]
		}
		buf = make([]byte, 2*len(buf))
	}
}

// logBuffer collects a logger's lines for assertions and for failure output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) count(sub string) int {
	return bytes.Count([]byte(b.String()), []byte(sub))
}

// newLogger logs to a buffer that is printed if the test fails.
func newLogger(t *testing.T, who string) (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log:\n%s", who, lb)
		}
	})
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// freeRange finds n consecutive TCP ports on 127.0.0.1, below Linux's
// ephemeral range so outgoing connections do not wander into it.
func freeRange(t *testing.T, n int) portalloc.Range {
	t.Helper()
	const lo, hi = 20000, 32000
	for range 200 {
		start := lo + mrand.IntN(hi-lo-n)
		r := portalloc.Range{Lo: start, Hi: start + n - 1}
		if rangeIsFree(r) {
			return r
		}
	}
	t.Fatalf("found no %d free consecutive ports in %d-%d", n, lo, hi)
	return portalloc.Range{}
}

func rangeIsFree(r portalloc.Range) bool {
	for p := r.Lo; p <= r.Hi; p++ {
		ln, err := net.Listen("tcp", localAddr(p))
		if err != nil {
			return false
		}
		ln.Close()
	}
	return true
}

func localAddr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// occupy listens on port as another program on the relay host would; the
// returned func frees it (also done at cleanup).
func occupy(t *testing.T, port int) (free func()) {
	t.Helper()
	ln, err := net.Listen("tcp", localAddr(port))
	if err != nil {
		t.Fatalf("occupying port %d: %v", port, err)
	}
	var once sync.Once
	free = func() { once.Do(func() { ln.Close() }) }
	t.Cleanup(free)
	return free
}

// deadPort returns a port on 127.0.0.1 that nothing listens on.
func deadPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// relayOpts configure startRelay; zero values mean a fresh 50-port range, a
// fresh mapping file, a control port chosen by the kernel and a 24 h lease.
type relayOpts struct {
	Ports    portalloc.Range
	Lease    time.Duration
	Addr     string // control address to listen on
	MapsPath string // the mapping file
	Observer Observer
	Relays   *registry.Servers
	IPTable  *iptable.File
	Token    []byte // zero: testToken
	TLS      *tls.Config
	Limits   Limits

	PeerTimeout time.Duration // zero: 3 s

	UDPIdle          time.Duration
	UDPMaxFlows      int
	UDPStreamPerFlow bool
}

type testRelay struct {
	Addr     string // control address, for nodes
	Maps     *registry.Mappings
	MapsPath string
	Ports    portalloc.Range
	Logs     *logBuffer
	Relay    *Relay
	stop     func()
}

// Stop cancels Serve and waits for it to return.
func (r *testRelay) Stop() { r.stop() }

func startRelay(t *testing.T, o relayOpts) *testRelay {
	t.Helper()
	if o.Ports == (portalloc.Range{}) {
		o.Ports = freeRange(t, 50)
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.MapsPath == "" {
		o.MapsPath = filepath.Join(t.TempDir(), registry.MappingFileName)
	}
	maps, err := registry.OpenMappings(o.MapsPath)
	if err != nil {
		t.Fatal(err)
	}
	log, logs := newLogger(t, "relay")
	r, err := NewRelay(RelayConfig{
		Name:             "test-relay",
		PublicHost:       "127.0.0.1",
		Token:            []byte(cmp.Or(string(o.Token), string(testToken))),
		Ports:            o.Ports,
		BindHost:         "127.0.0.1",
		Mappings:         maps,
		Relays:           o.Relays,
		IPTable:          o.IPTable,
		Lease:            o.Lease,
		HandshakeTimeout: 2 * time.Second,
		PeerTimeout:      cmp.Or(o.PeerTimeout, 3*time.Second),
		Logger:           log,
		Observer:         o.Observer,
		TLS:              o.TLS,
		Limits:           o.Limits,
		UDPIdle:          o.UDPIdle,
		UDPMaxFlows:      o.UDPMaxFlows,
		udpStreamPerFlow: o.UDPStreamPerFlow,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-served:
				if err != nil {
					t.Errorf("relay Serve returned %v after cancel, want nil", err)
				}
			case <-time.After(stopTimeout):
				t.Errorf("relay Serve did not return within %v of cancel; stacks:\n%s", stopTimeout, allStacks())
			}
		})
	}
	t.Cleanup(stop)
	return &testRelay{Addr: ln.Addr().String(), Maps: maps, MapsPath: o.MapsPath, Ports: o.Ports, Logs: logs, Relay: r, stop: stop}
}

type testNode struct {
	ready  chan Connected
	exited chan struct{} // closed when Run has returned
	err    error         // Run's result, once exited is closed
	Logs   *logBuffer
	Node   *Node
	stop   func() error
}

// nodeConfig is a node config for relay r with short timeouts.
func nodeConfig(r *testRelay, exposes []Expose) NodeConfig {
	return NodeConfig{
		Relay:            r.Addr,
		Exposes:          exposes,
		Token:            testToken,
		DialTimeout:      2 * time.Second,
		HandshakeTimeout: 2 * time.Second,
		PeerTimeout:      3 * time.Second,
		MinBackoff:       20 * time.Millisecond,
		MaxBackoff:       200 * time.Millisecond,
	}
}

// runNode starts Run in the background; a nil Key gets a fresh one. Stop
// cancels and waits for Run, returning its error.
func runNode(t *testing.T, cfg NodeConfig) *testNode {
	t.Helper()
	if cfg.Key == nil {
		cfg.Key = newKey(t)
	}
	n := &testNode{ready: make(chan Connected, 64), exited: make(chan struct{})}
	cfg.Logger, n.Logs = newLogger(t, "node "+cfg.Name)
	onReady := cfg.OnReady
	cfg.OnReady = func(c Connected) {
		if onReady != nil {
			onReady(c)
		}
		select {
		case n.ready <- c:
		default:
			t.Errorf("too many OnReady calls")
		}
	}
	node, err := NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.Node = node
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(n.exited)
		n.err = node.Run(ctx)
	}()
	var once sync.Once
	n.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case <-n.exited:
			case <-time.After(stopTimeout):
				t.Errorf("node Run did not return within %v of cancel; stacks:\n%s", stopTimeout, allStacks())
			}
		})
		select {
		case <-n.exited:
			return n.err
		default:
			return errors.New("still running")
		}
	}
	t.Cleanup(func() { n.stop() })
	return n
}

// Stop cancels Run and waits for it; it returns Run's error.
func (n *testNode) Stop() error { return n.stop() }

// nextReady waits for the next OnReady, failing if Run returns first.
func (n *testNode) nextReady(t *testing.T, within time.Duration) Connected {
	t.Helper()
	select {
	case c := <-n.ready:
		return c
	case <-n.exited:
		t.Fatalf("node stopped before it was ready: %v", n.err)
	case <-time.After(within):
		t.Fatalf("node not ready within %v", within)
	}
	return Connected{}
}

// wait waits for Run to return by itself and returns its error.
func (n *testNode) wait(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case <-n.exited:
		return n.err
	case <-time.After(within):
		t.Fatalf("node Run did not return within %v", within)
		return nil
	}
}

func (n *testNode) running() bool {
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// startNode runs a node exposing exposes through r and returns it with its
// grants, once OnReady reports them. A nil key gets a fresh one.
func startNode(t *testing.T, r *testRelay, exposes []Expose, key ed25519.PrivateKey) (*testNode, []registry.Mapping) {
	t.Helper()
	cfg := nodeConfig(r, exposes)
	cfg.Key = key
	n := runNode(t, cfg)
	return n, n.nextReady(t, 5*time.Second).Mappings
}

func tcpExpose(local string) Expose { return Expose{Network: "tcp", Local: local} }

// portFor returns the public port granted for local over TCP.
func portFor(t *testing.T, ms []registry.Mapping, local string) int {
	t.Helper()
	return portOf(t, ms, "TCP", local)
}

// portOf returns the public port granted for local over typ (TCP or UDP).
func portOf(t *testing.T, ms []registry.Mapping, typ, local string) int {
	t.Helper()
	for _, m := range ms {
		if m.Local == local && m.Type == typ {
			if m.Address != "127.0.0.1" {
				t.Fatalf("mapping %+v: want 127.0.0.1", m)
			}
			return m.BlindPort
		}
	}
	t.Fatalf("no %s mapping for %s in %+v", typ, local, ms)
	return 0
}

// startService runs handle for each connection to a fresh 127.0.0.1 port.
// At cleanup it stops accepting, closes open connections and waits for every
// handler.
func startService(t testing.TB, handle func(c *net.TCPConn)) string {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[*net.TCPConn]bool{}
	)
	wg.Go(func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// startEcho runs a service that sends back what it reads, and half-closes
// at the end of its input.
func startEcho(t testing.TB) string {
	return startService(t, func(c *net.TCPConn) {
		if _, err := io.Copy(c, c); err == nil {
			c.CloseWrite()
		}
	})
}

// dialVisitor connects to a public port as a visitor would, with a deadline
// that bounds the test.
func dialVisitor(t *testing.T, port int) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", localAddr(port), 2*time.Second)
	if err != nil {
		t.Fatalf("visitor dial %d: %v", port, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c.(*net.TCPConn)
}

// payload is n bytes that differ for each seed.
func payload(seed uint64, n int) []byte {
	b := make([]byte, n)
	mrand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 0xAA}).Read(b)
	return b
}

// exchange sends data to an echo service through port, half-closes, and
// returns everything read back until EOF.
func exchange(port int, data []byte) ([]byte, error) {
	c, err := net.DialTimeout("tcp", localAddr(port), 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, rerr := io.ReadAll(c)
	if err := <-werr; err != nil {
		return got, err
	}
	return got, rerr
}

// assertEcho checks that port carries a small exchange to an echo service.
func assertEcho(t *testing.T, port int) {
	t.Helper()
	want := payload(uint64(port), 1000)
	got, err := exchange(port, want)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("echo through port %d: got %d bytes (equal: %v), err %v", port, len(got), bytes.Equal(got, want), err)
	}
}

// expectClosed checks that the visitor connection c is ended by the relay
// (EOF or reset) within d, rather than left hanging.
func expectClosed(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(make([]byte, 1))
	switch {
	case n > 0:
		t.Fatalf("read %d bytes from a connection that should be closed", n)
	case isTimeout(err):
		t.Fatalf("connection still open after %v", d)
	case !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET):
		t.Fatalf("read: %v, want EOF or connection reset", err)
	}
}

// listenFails reports whether port is held on 127.0.0.1.
func listenFails(port int) bool {
	ln, err := net.Listen("tcp", localAddr(port))
	if err != nil {
		return true
	}
	ln.Close()
	return false
}

// eventually polls cond every 10 ms for up to d.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fileMappings reads the mapping file afresh, as `p2prc mappings` would.
func fileMappings(t *testing.T, path string) []registry.Mapping {
	t.Helper()
	m, err := registry.OpenMappings(path)
	if err != nil {
		t.Fatal(err)
	}
	return m.List()
}
