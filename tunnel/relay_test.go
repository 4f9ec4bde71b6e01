package tunnel

import (
	"bytes"
	"crypto/sha256"
	"io"
	mrand "math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Traffic through relay and node, as a visitor sees it.

func TestTenMegabytesBothWays(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{})
	_, ms := startNode(t, r, []Expose{tcpExpose(echo)}, nil)
	c := dialVisitor(t, portFor(t, ms, echo))

	const size = 10 << 20
	sent, got := sha256.New(), sha256.New()
	start := time.Now()
	werr := make(chan error, 1)
	go func() {
		src := io.TeeReader(io.LimitReader(mrand.NewChaCha8([32]byte{1}), size), sent)
		_, err := io.Copy(c, src)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	n, err := io.Copy(got, c)
	if err != nil {
		t.Fatalf("reading the echo: %v after %d bytes", err, n)
	}
	if err := <-werr; err != nil {
		t.Fatalf("sending: %v", err)
	}
	if n != size {
		t.Fatalf("got %d bytes back, sent %d", n, size)
	}
	if !bytes.Equal(sent.Sum(nil), got.Sum(nil)) {
		t.Fatalf("SHA-256 of the echo %x differs from what was sent %x", got.Sum(nil), sent.Sum(nil))
	}
	t.Logf("10 MiB each way in %v", time.Since(start).Round(time.Millisecond))
}

// visitConcurrently has n visitors exchange distinct data with the echo
// service behind port at once; each must get exactly its own data back.
func visitConcurrently(t *testing.T, port, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			want := payload(uint64(i), 16<<10+i*97)
			got, err := exchange(port, want)
			if err != nil {
				t.Errorf("visitor %d: %v", i, err)
				return
			}
			if !bytes.Equal(got, want) {
				t.Errorf("visitor %d: got %d bytes back that differ from its %d", i, len(got), len(want))
			}
		})
	}
	wg.Wait()
}

func TestHundredConcurrentVisitors(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{})
	_, ms := startNode(t, r, []Expose{tcpExpose(echo)}, nil)
	visitConcurrently(t, portFor(t, ms, echo), 100)
}

// After busy use, stopping node and relay ends every visitor connection
// and leaves no goroutine behind (leakCheck runs after every cleanup).
func TestNoGoroutineOutlivesRelayAndNode(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{})
	n, ms := startNode(t, r, []Expose{tcpExpose(echo)}, nil)
	port := portFor(t, ms, echo)
	visitConcurrently(t, port, 100)
	// Visitors still connected when everything stops must not pin anything.
	var open []*net.TCPConn
	for range 10 {
		c := dialVisitor(t, port)
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	if err := n.Stop(); err != nil {
		t.Errorf("node Run = %v after cancel, want nil", err)
	}
	r.Stop()
	for _, c := range open {
		expectClosed(t, c, 2*time.Second)
	}
}

// A visitor that shuts down writing still gets the whole reply.
func TestHalfCloseVisitorFirst(t *testing.T) {
	leakCheck(t)
	request := payload(1, 100<<10)
	reply := payload(2, 300<<10)
	received := make(chan []byte, 1)
	svc := startService(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		got, err := io.ReadAll(c)
		received <- got
		if err != nil {
			return
		}
		c.Write(reply)
	})
	r := startRelay(t, relayOpts{})
	_, ms := startNode(t, r, []Expose{tcpExpose(svc)}, nil)

	c := dialVisitor(t, portFor(t, ms, svc))
	if _, err := c.Write(request); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the reply after half-close: %v (%d bytes)", err, len(got))
	}
	if !bytes.Equal(got, reply) {
		t.Fatalf("got a %d-byte reply, want the %d bytes the service sent", len(got), len(reply))
	}
	if req := <-received; !bytes.Equal(req, request) {
		t.Fatalf("the service read %d bytes to EOF, want the %d-byte request", len(req), len(request))
	}
}

// A service that shuts down writing first still receives what the visitor
// sends afterwards.
func TestHalfCloseServiceFirst(t *testing.T) {
	leakCheck(t)
	greeting := payload(3, 50<<10)
	upload := payload(4, 200<<10)
	received := make(chan []byte, 1)
	svc := startService(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Write(greeting); err != nil {
			received <- nil
			return
		}
		c.CloseWrite()
		got, _ := io.ReadAll(c)
		received <- got
	})
	r := startRelay(t, relayOpts{})
	_, ms := startNode(t, r, []Expose{tcpExpose(svc)}, nil)

	c := dialVisitor(t, portFor(t, ms, svc))
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, greeting) {
		t.Fatalf("visitor read %d bytes then %v; want the %d-byte greeting then EOF", len(got), err, len(greeting))
	}
	if _, err := c.Write(upload); err != nil {
		t.Fatalf("writing after the service's half-close: %v", err)
	}
	c.CloseWrite()
	select {
	case up := <-received:
		if !bytes.Equal(up, upload) {
			t.Fatalf("the service received %d bytes, want the %d the visitor sent after its half-close", len(up), len(upload))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the service did not receive the upload")
	}
	// Both sides are done: the visitor sees the end.
	expectClosed(t, c, 2*time.Second)
}

// A mapping whose local service is down closes its visitors at once, and the
// node's other mapping keeps working meanwhile.
func TestLocalServiceDown(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	dead := localAddr(deadPort(t))
	r := startRelay(t, relayOpts{})
	_, ms := startNode(t, r, []Expose{tcpExpose(dead), tcpExpose(echo)}, nil)
	deadPublic, livePublic := portFor(t, ms, dead), portFor(t, ms, echo)

	// A visitor of the live mapping stays connected through it all.
	live := dialVisitor(t, livePublic)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", localAddr(deadPublic), 2*time.Second)
			if err != nil {
				return // refused outright is closed too
			}
			defer c.Close()
			start := time.Now()
			c.SetReadDeadline(start.Add(2 * time.Second))
			n, err := c.Read(make([]byte, 1))
			if n > 0 || isTimeout(err) {
				t.Errorf("visitor %d of a dead service: read %d bytes, %v after %v; want EOF or reset at once", i, n, err, time.Since(start))
			}
		})
		wg.Go(func() {
			want := payload(uint64(i), 4096)
			if got, err := exchange(livePublic, want); err != nil || !bytes.Equal(got, want) {
				t.Errorf("live visitor %d: %d bytes back, %v", i, len(got), err)
			}
		})
	}
	wg.Wait()
	want := []byte("still here")
	if _, err := live.Write(want); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(live, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the long-lived visitor got %q, %v", got, err)
	}
}

// A visitor that resets its connection while the service streams to it ends
// the service's connection too.
func TestVisitorResetReachesService(t *testing.T) {
	leakCheck(t)
	serviceEnded := make(chan error, 1)
	svc := startService(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		chunk := payload(5, 32<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				serviceEnded <- err
				return
			}
		}
	})
	r := startRelay(t, relayOpts{})
	_, ms := startNode(t, r, []Expose{tcpExpose(svc)}, nil)

	c := dialVisitor(t, portFor(t, ms, svc))
	if _, err := io.CopyN(io.Discard, c, 2<<20); err != nil {
		t.Fatalf("the stream did not flow: %v", err)
	}
	c.SetLinger(0)
	c.Close()
	start := time.Now()
	select {
	case err := <-serviceEnded:
		if isTimeout(err) {
			t.Fatalf("the service's write timed out instead of failing: %v", err)
		}
		t.Logf("service write failed %v after the visitor's reset: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(2 * time.Second):
		t.Fatal("the service kept streaming 2 s after the visitor reset its connection")
	}
}

// Visitors that reset at once (as port scanners do) must not leave the
// node's connections to a streaming service open.
func TestImmediateVisitorResetReachesService(t *testing.T) {
	leakCheck(t)
	var (
		mu   sync.Mutex
		open int
	)
	svc := startService(t, func(c *net.TCPConn) {
		mu.Lock()
		open++
		mu.Unlock()
		defer func() {
			mu.Lock()
			open--
			mu.Unlock()
		}()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		chunk := payload(6, 4<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	r := startRelay(t, relayOpts{})
	_, ms := startNode(t, r, []Expose{tcpExpose(svc)}, nil)
	port := portFor(t, ms, svc)
	for range 30 {
		c, err := net.DialTimeout("tcp", localAddr(port), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	// The relay still serves: a proper visitor gets data.
	c := dialVisitor(t, port)
	if _, err := io.CopyN(io.Discard, c, 64<<10); err != nil {
		t.Fatal(err)
	}
	c.SetLinger(0)
	c.Close()
	if !eventually(2*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return open == 0 }) {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d service connections still open 2 s after their visitors reset", open)
	}
}

// A visitor that dies mid-upload (a TCP reset) must not look to the local
// service like a clean end of the upload: the reset travels on the control
// stream, and the stream's FIN waits for it.
func TestVisitorResetNeverLooksLikeACleanEnd(t *testing.T) {
	leakCheck(t)
	var clean, reset atomic.Int64
	svc := startService(t, func(c *net.TCPConn) {
		if _, err := io.ReadAll(c); err == nil {
			clean.Add(1)
		} else {
			reset.Add(1)
		}
	})
	r := startRelay(t, relayOpts{})
	_, ms := startNode(t, r, []Expose{tcpExpose(svc)}, nil)
	port := portFor(t, ms, svc)
	const visitors = 30
	for range visitors {
		v := dialVisitor(t, port)
		v.Write(make([]byte, 1000))
		time.Sleep(10 * time.Millisecond) // the upload is under way at the service
		v.SetLinger(0)
		v.Close()
	}
	if !eventually(5*time.Second, func() bool { return clean.Load()+reset.Load() == visitors }) {
		t.Fatalf("the service saw %d clean ends and %d resets of %d uploads", clean.Load(), reset.Load(), visitors)
	}
	if clean.Load() > 0 {
		t.Errorf("%d of %d visitor resets reached the service as a clean end of input", clean.Load(), visitors)
	}
}
