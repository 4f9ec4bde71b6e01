package tunnel

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// freezer forwards TCP connections to a target and can freeze them all:
// it stops reading both ways while keeping the connections open, the way a
// peer that hangs (or a path that black-holes) looks from either end.
type freezer struct {
	ln     net.Listener
	target string
	frozen atomic.Bool
	thaw   chan struct{} // closed on stop
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
}

func startFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target, thaw: make(chan struct{})}
	f.wg.Go(f.accept)
	t.Cleanup(f.stop)
	return f
}

func (f *freezer) Addr() string { return f.ln.Addr().String() }

func (f *freezer) accept() {
	for {
		a, err := f.ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", f.target)
		if err != nil {
			a.Close()
			continue
		}
		f.mu.Lock()
		f.conns = append(f.conns, a, b)
		f.mu.Unlock()
		f.wg.Go(func() { f.forward(b, a) })
		f.wg.Go(func() { f.forward(a, b) })
	}
}

// forward copies src to dst, holding still while frozen.
func (f *freezer) forward(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		for f.frozen.Load() {
			select {
			case <-f.thaw:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (f *freezer) stop() {
	f.ln.Close()
	close(f.thaw)
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// A peer that stops answering is noticed within the peer timeout by both
// ends, even while a bulk transfer keeps the data queue full (yamux's own
// pings would wait behind it).
func TestStalledPeerNoticedDuringBulkTransfer(t *testing.T) {
	leakCheck(t)
	const peerTimeout = time.Second
	relay := startRelay(t, relayOpts{PeerTimeout: peerTimeout})
	path := startFreezer(t, relay.Addr)
	sink := startService(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })

	cfg := nodeConfig(relay, []Expose{tcpExpose(sink)})
	cfg.Relay = path.Addr()
	cfg.PeerTimeout = peerTimeout
	cfg.MinBackoff, cfg.MaxBackoff = time.Second, time.Second
	node := runNode(t, cfg)
	port := node.nextReady(t, 5*time.Second).Mappings[0].BlindPort

	// Bulk: a visitor sends as fast as the path takes it.
	visitor := dialVisitor(t, port)
	var sent atomic.Int64
	bulkDone := make(chan struct{})
	go func() {
		defer close(bulkDone)
		buf := make([]byte, 64<<10)
		for {
			n, err := visitor.Write(buf)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { visitor.Close(); <-bulkDone })
	if !eventually(5*time.Second, func() bool { return sent.Load() > 8<<20 }) {
		t.Fatalf("bulk transfer did not get going: %d bytes", sent.Load())
	}

	path.frozen.Store(true)
	frozeAt := time.Now()
	bound := peerTimeout + 2*time.Second // the timeout plus the watchdog's tick and scheduling slack
	if !eventually(bound, func() bool { return relay.Relay.Sessions() == 0 }) {
		t.Fatalf("relay still holds the session %v after the node froze", time.Since(frozeAt))
	}
	relaySaw := time.Since(frozeAt)
	if !eventually(bound, func() bool { return node.Logs.count("sent nothing") > 0 }) {
		t.Fatalf("node did not notice the frozen relay within %v; its log:\n%s", bound, node.Logs)
	}
	t.Logf("relay noticed after %v, node after about %v (peer timeout %v)", relaySaw.Round(10*time.Millisecond), time.Since(frozeAt).Round(10*time.Millisecond), peerTimeout)
	if !eventually(time.Second, func() bool { return relay.Logs.count("sent nothing") > 0 }) { // logged just after the session is dropped
		t.Errorf("the relay did not say why it dropped the node; its log:\n%s", relay.Logs)
	}
}

// A visitor that reads nothing cannot make relay and node buffer without
// bound: the service's writes block once the flow-control window and the
// socket buffers are full.
func TestSlowVisitorIsBoundedByTheWindow(t *testing.T) {
	leakCheck(t)
	relay := startRelay(t, relayOpts{})
	var written atomic.Int64
	blocked := make(chan struct{})
	var blockOnce sync.Once
	firehose := startService(t, func(c *net.TCPConn) {
		buf := make([]byte, 64<<10)
		for {
			c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
			n, err := c.Write(buf)
			written.Add(int64(n))
			if isTimeout(err) {
				blockOnce.Do(func() { close(blocked) })
				continue
			}
			if err != nil {
				return
			}
			if written.Load() > 256<<20 {
				return // far past any bound: the test fails below
			}
		}
	})
	_, ms := startNode(t, relay, []Expose{tcpExpose(firehose)}, nil)
	visitor := dialVisitor(t, ms[0].BlindPort)
	visitor.SetReadBuffer(64 << 10)
	select {
	case <-blocked:
	case <-time.After(10 * time.Second):
		t.Fatalf("the service never blocked; it wrote %d MiB to a visitor that reads nothing", written.Load()>>20)
	}
	// Kernel socket buffers on four sockets plus one 1 MiB window: loopback
	// buffers can reach several MiB each, so 32 MiB is a generous bound, and
	// far below the 256 MiB a service would push without flow control.
	if w := written.Load(); w > 32<<20 {
		t.Fatalf("the service wrote %d MiB before blocking; flow control is not bounding a slow visitor", w>>20)
	}
	t.Logf("service blocked after %d KiB", written.Load()>>10)
	visitor.Close()
}

// A node that cannot reach its relay says so once, not at every retry, and
// says so again only when something changes; it reconnects by itself when
// the relay comes up.
func TestReconnectLogsEachStateOnce(t *testing.T) {
	leakCheck(t)
	addr := localAddr(deadPort(t))
	svc := startEcho(t)
	cfg := NodeConfig{
		Relay: addr, Token: testToken, Exposes: []Expose{tcpExpose(svc)},
		DialTimeout: time.Second, PeerTimeout: 3 * time.Second,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
	}
	node := runNode(t, cfg)
	if !eventually(5*time.Second, func() bool { return node.Logs.count("still reconnecting") >= 5 }) {
		t.Fatalf("the node did not keep retrying; its log:\n%s", node.Logs)
	}
	warnings := func() int {
		return node.Logs.count("msg=\"relay unreachable") + node.Logs.count("msg=\"lost the relay")
	}
	if n := warnings(); n != 1 {
		t.Fatalf("%d warnings for one unreachable relay, want 1; log:\n%s", n, node.Logs)
	}
	relay := startRelay(t, relayOpts{Addr: addr})
	ms := node.nextReady(t, 5*time.Second).Mappings
	assertEcho(t, ms[0].BlindPort)
	relay.Stop()
	if !eventually(5*time.Second, func() bool { return node.Logs.count("level=WARN msg=\"lost the relay") == 1 }) {
		t.Fatalf("losing the relay was not said; log:\n%s", node.Logs)
	}
	// Then one line for why it cannot be reached, however many retries fail.
	retries := node.Logs.count("still reconnecting")
	if !eventually(5*time.Second, func() bool { return node.Logs.count("still reconnecting") >= retries+5 }) {
		t.Fatalf("the node stopped retrying; log:\n%s", node.Logs)
	}
	if n := warnings(); n != 3 {
		t.Fatalf("%d warnings, want 3 (unreachable, lost, unreachable); log:\n%s", n, node.Logs)
	}
}

// With Once, a node whose relay is unreachable returns instead of retrying.
func TestOnceReturnsOnFirstFailure(t *testing.T) {
	leakCheck(t)
	node := runNode(t, NodeConfig{
		Relay: localAddr(deadPort(t)), Token: testToken, Once: true,
		Exposes: []Expose{tcpExpose("127.0.0.1:1")},
	})
	if err := node.wait(t, 5*time.Second); err == nil {
		t.Fatal("Run returned nil for an unreachable relay with Once")
	}
}
