package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
)

// The forwarders path (--forwarders) is a yardstick, not a product: two
// processes in a row, each accepting TCP connections and copying bytes to
// its next hop, where relay and node stand. It has what every relay built
// of two processes must pay — two more processes woken per message, two
// more connections per visitor — and nothing else: no multiplexing, no
// framing, no TLS, no limits, and the copies done by the kernel (Go's
// io.Copy between TCP connections splices on Linux, which a relay that
// frames its streams cannot). Its ratio is about the best any two-process
// relay can reach on the machine the bench runs on.

// forwardersPath names the path in the report.
const forwardersPath = "forwarders"

// forwardingLine starts the line a forwarder prints on stdout when it is
// ready: the prefix, then JSON mapping each target to its listening address.
const forwardingLine = "forwarding "

// ServeForwarder listens on a loopback port for each target and copies
// every connection to it both ways, until ctx ends: the process the bench
// starts with `p2prc bench --serve-forwarder TARGET,...`. It prints where
// it listens on w, as one line, when ready.
func ServeForwarder(ctx context.Context, targets []string, w io.Writer) error {
	if len(targets) == 0 {
		return errors.New("--serve-forwarder needs at least one HOST:PORT to forward to")
	}
	var fwd forwarder
	defer fwd.close()
	listening := make(map[string]string)
	for _, t := range targets {
		to, err := net.ResolveTCPAddr("tcp", t)
		if err != nil {
			return fmt.Errorf("--serve-forwarder %q: %w", t, err)
		}
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return err
		}
		fwd.add(ln, to)
		listening[t] = ln.Addr().String()
	}
	js, err := json.Marshal(listening)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "%s%s\n", forwardingLine, js); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// parseForwardingLine reads a forwarder's line: where it listens, by target.
func parseForwardingLine(line string) (map[string]string, error) {
	var m map[string]string
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, forwardingLine)), &m); err != nil {
		return nil, fmt.Errorf("a forwarder said %q: %w", line, err)
	}
	return m, nil
}

// forwarder owns its listeners and connections; close ends them all and
// waits for their goroutines.
type forwarder struct {
	mu     sync.Mutex
	lns    []*net.TCPListener
	conns  map[*net.TCPConn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func (f *forwarder) add(ln *net.TCPListener, to *net.TCPAddr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lns = append(f.lns, ln)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return // closed; a forwarder under a connection storm may just fail
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				f.forward(c, to)
			}()
		}
	}()
}

// track registers c for close; false if the forwarder is closing.
func (f *forwarder) track(c *net.TCPConn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	if f.conns == nil {
		f.conns = make(map[*net.TCPConn]struct{})
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) untrack(c *net.TCPConn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

// forward joins c to a new connection to the target, passing each side's
// end of input on as a half-close, until both directions are done.
func (f *forwarder) forward(c *net.TCPConn, to *net.TCPAddr) {
	if !f.track(c) {
		c.Close()
		return
	}
	defer f.untrack(c)
	d, err := net.DialTCP("tcp", nil, to)
	if err != nil {
		return
	}
	if !f.track(d) {
		d.Close()
		return
	}
	defer f.untrack(d)
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyHalf(d, c)
	}()
	copyHalf(c, d)
	<-done
}

// copyHalf copies src to dst; at src's end dst is half-closed, on an
// error both are closed.
func copyHalf(dst, src *net.TCPConn) {
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		src.Close()
		return
	}
	dst.CloseWrite()
}

func (f *forwarder) close() {
	f.mu.Lock()
	f.closed = true
	for _, ln := range f.lns {
		ln.Close()
	}
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}
