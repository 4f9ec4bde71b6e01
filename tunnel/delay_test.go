package tunnel

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// delayProxy stands for a longer path to a relay: it forwards each TCP
// connection to target and holds every chunk of bytes for delay in each
// direction, in order. It only ever listens on and dials 127.0.0.1, and it
// slows only the connections that go through it (no netem on lo, which would
// slow every test on the machine). Close stops it and ends its connections.
type delayProxy struct {
	ln     net.Listener
	target string
	delay  atomic.Int64 // time.Duration; may change while running

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func startDelayProxy(t *testing.T, target string, delay time.Duration) *delayProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &delayProxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.delay.Store(int64(delay))
	p.wg.Go(p.accept)
	t.Cleanup(p.Close)
	return p
}

func (p *delayProxy) Addr() string { return p.ln.Addr().String() }

func (p *delayProxy) setDelay(d time.Duration) { p.delay.Store(int64(d)) }

// Close stops accepting, closes every connection and waits for the pumps.
func (p *delayProxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// track registers c so Close can end it; false once closed.
func (p *delayProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *delayProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *delayProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Go(func() { p.forward(c) })
	}
}

// forward joins one accepted connection to a fresh one to the target. If
// the target is down, the accepted connection is closed: to the dialler the
// relay is unreachable.
func (p *delayProxy) forward(c net.Conn) {
	defer p.untrack(c)
	u, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil || !p.track(u) {
		return
	}
	defer p.untrack(u)
	var wg sync.WaitGroup
	wg.Go(func() { p.pump(u, c) })
	p.pump(c, u)
	wg.Wait()
}

type chunk struct {
	at   time.Time
	data []byte
}

// pump copies src to dst, each chunk delivered delay after it was read. At
// the end of src it half-closes dst; on an error it closes both.
func (p *delayProxy) pump(dst, src net.Conn) {
	queue := make(chan chunk, 64) // bounds what the proxy holds: 64 reads
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(queue)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				queue <- chunk{time.Now(), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	})
	ok := true
	for ch := range queue {
		if !ok {
			continue // drain so the reader ends
		}
		time.Sleep(time.Until(ch.at.Add(time.Duration(p.delay.Load()))))
		if _, err := dst.Write(ch.data); err != nil {
			ok = false
			src.Close()
		}
	}
	wg.Wait()
	if tc, isTCP := dst.(*net.TCPConn); ok && isTCP {
		tc.CloseWrite()
	} else {
		dst.Close()
	}
}

// The proxy itself: it carries bytes both ways and adds its delay.
func TestDelayProxy(t *testing.T) {
	echo := startEcho(t)
	p := startDelayProxy(t, echo, 30*time.Millisecond)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through the proxy: %q, %v", buf, err)
	}
	if rtt := time.Since(start); rtt < 60*time.Millisecond {
		t.Fatalf("round trip %v through a proxy delaying 30 ms each way", rtt)
	}
}
