package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
)

// The forwarders path (--forwarders) is a yardstick, not a product: two
// processes in a row, each accepting TCP connections and copying bytes to
// its next hop, where relay and node stand. It has what every relay built
// of two processes must pay — two more processes woken per message, two
// more connections per visitor — and nothing else: no multiplexing, no
// framing, no TLS, no limits, and the copies done by the kernel (Go's
// io.Copy between TCP connections splices on Linux, which a relay that
// frames its streams cannot). Bulk transfers through a relay rarely beat
// it; small requests can, where the relay carries many streams' messages
// in one system call and the forwarders cannot. In its column the "relay"
// rows are the first forwarder's, the "node" rows the second's.

// forwardersPath names the path in the report.
const forwardersPath = "forwarders"

// ServeForwarder listens on a loopback port for each target and copies
// every connection to it both ways, until ctx ends: the process the bench
// starts with `p2prc bench --serve-forwarder TARGET,...`. When ready it
// announces on w where it listens for each target (see announce).
func ServeForwarder(ctx context.Context, targets []string, w io.Writer) error {
	if len(targets) == 0 {
		return errors.New("--serve-forwarder needs at least one HOST:PORT to forward to")
	}
	var running []*tcpService
	defer func() {
		for _, fwd := range running {
			fwd.close()
		}
	}()
	listening := make(map[string]string)
	for _, t := range targets {
		to, err := net.ResolveTCPAddr("tcp", t)
		if err != nil {
			return fmt.Errorf("--serve-forwarder %q: %w", t, err)
		}
		fwd, err := startTCPService(func(c *net.TCPConn) { forward(c, to) })
		if err != nil {
			return err
		}
		running = append(running, fwd)
		listening[t] = fwd.ln.Addr().String()
	}
	return announce(ctx, w, listening)
}

// forward joins c to a new connection to the target, passing each side's
// end of input on as a half-close, until both directions are done. The
// service that accepted c closes it, also to end a forward early.
func forward(c *net.TCPConn, to *net.TCPAddr) {
	d, err := net.DialTCP("tcp", nil, to)
	if err != nil {
		return
	}
	defer d.Close()
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
