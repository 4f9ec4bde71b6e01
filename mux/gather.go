package mux

import (
	"io"
	"net"
	"sync"
	"time"
)

// The gathering writer. yamux's send loop writes one frame at a time and
// waits for each write to finish, so when many streams have small frames
// ready (a burst of requests) each costs its own system call. The gatherer
// lets the send loop hand over a small frame and go on: a flusher goroutine
// writes everything handed over while its previous write was in progress as
// one write. With nothing in flight, a frame is written at once; under load,
// the frames that piled up during one write leave together in the next.
//
// A large frame gains nothing from company and would cost a copy, so the
// send loop writes it itself, after (and in the same writev as) whatever
// small frames are waiting, which keeps the order.
const (
	// gatherMax bounds the bytes handed over but not yet written. When it
	// is reached the send loop waits for the flusher, so a connection that
	// cannot keep up pushes back on yamux as before.
	gatherMax = 64 << 10

	// gatherInline is the body size from which the send loop writes a
	// frame itself rather than copying it for the flusher.
	gatherInline = 8 << 10

	// closeFlush bounds how long Close waits for frames handed over (a
	// goodbye message, say) to reach a connection that is still alive.
	closeFlush = time.Second
)

// gatherer owns the writes to a connection. Only yamux's send loop calls
// enqueue and writeNow; the flusher goroutine is started by the first
// enqueue and ended by close, which waits for it.
type gatherer struct {
	conn     io.Writer
	vectored bool // conn takes net.Buffers as one writev

	mu      sync.Mutex
	wake    sync.Cond // the flusher waits for work; the send loop for room
	pending []byte    // handed over, not yet written
	spare   []byte    // the buffer the flusher last wrote, for reuse
	busy    bool      // a write to conn is in progress
	err     error     // the first write error; every later call returns it
	closing bool
	started bool
	done    chan struct{} // closed when the flusher has ended

	vec     [][]byte    // writeNow's scratch, send loop only
	bufs    net.Buffers // the same, as WriteTo consumes it
	scratch []byte      // writeNow's scratch without writev, send loop only
}

func newGatherer(conn io.Writer, vectored bool) *gatherer {
	g := &gatherer{conn: conn, vectored: vectored, done: make(chan struct{})}
	g.wake.L = &g.mu
	return g
}

// errGatherClosed is returned for frames handed over after close.
var errGatherClosed = net.ErrClosed

// enqueue hands over a frame (hdr may be nil) for the flusher to write. It
// copies the frame, so the caller may reuse its buffers at once.
func (g *gatherer) enqueue(hdr, body []byte) error {
	n := len(hdr) + len(body)
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.err == nil && !g.closing && len(g.pending) > 0 && len(g.pending)+n > gatherMax {
		g.wake.Wait()
	}
	switch {
	case g.err != nil:
		return g.err
	case g.closing:
		return errGatherClosed
	}
	g.pending = append(append(g.pending, hdr...), body...)
	if !g.started {
		g.started = true
		go g.flush()
	}
	g.wake.Broadcast()
	return nil
}

// writeNow writes what is pending, then hdr and body, with one system call
// where the connection allows, on the caller's goroutine.
func (g *gatherer) writeNow(hdr, body []byte) error {
	g.mu.Lock()
	for g.err == nil && !g.closing && g.busy {
		g.wake.Wait()
	}
	switch {
	case g.err != nil:
		g.mu.Unlock()
		return g.err
	case g.closing:
		g.mu.Unlock()
		return errGatherClosed
	}
	// Only the send loop adds to pending, and it is here: the buffer
	// stays ours until busy is cleared.
	g.busy = true
	pending := g.pending
	g.mu.Unlock()

	var err error
	if g.vectored {
		g.vec = append(g.vec[:0], pending, hdr, body)
		g.bufs = g.vec // WriteTo consumes its receiver; a field, so nothing escapes
		_, err = g.bufs.WriteTo(g.conn)
		clear(g.vec) // keep no reference to the caller's body
	} else {
		g.scratch = append(append(append(g.scratch[:0], pending...), hdr...), body...)
		_, err = g.conn.Write(g.scratch)
		if cap(g.scratch) > 2*gatherMax {
			g.scratch = nil // don't keep an unusually large frame's buffer
		}
	}

	g.mu.Lock()
	g.pending = pending[:0]
	g.busy = false
	g.fail(err)
	g.wake.Broadcast()
	g.mu.Unlock()
	return err
}

// flush writes what is handed over until close, or the first error.
func (g *gatherer) flush() {
	defer close(g.done)
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		for g.err == nil && !g.closing && (g.busy || len(g.pending) == 0) {
			g.wake.Wait()
		}
		if g.err != nil || (g.closing && (g.busy || len(g.pending) == 0)) {
			return
		}
		batch := g.pending
		g.pending, g.spare = g.spare[:0], nil
		g.busy = true
		g.mu.Unlock()

		_, err := g.conn.Write(batch)

		g.mu.Lock()
		g.busy = false
		if g.spare == nil && cap(batch) <= 2*gatherMax {
			g.spare = batch[:0]
		}
		g.fail(err)
		g.wake.Broadcast()
	}
}

// fail records the first write error. A connection that failed a write is
// useless: what follows could not be framed.
func (g *gatherer) fail(err error) {
	if err != nil && g.err == nil {
		g.err = err
	}
}

// close stops taking frames, gives the flusher up to closeFlush to write
// those already handed over, and waits for it to end. closeConn closes the
// connection; a write stuck on a dead peer fails then.
func (g *gatherer) close(setDeadline func(time.Time) error, closeConn func() error) error {
	g.mu.Lock()
	first := !g.closing
	g.closing = true
	started := g.started
	g.wake.Broadcast()
	g.mu.Unlock()
	if !first {
		return closeConn()
	}
	if started {
		if setDeadline != nil {
			setDeadline(time.Now().Add(closeFlush))
		}
		select {
		case <-g.done:
		case <-time.After(closeFlush):
		}
	}
	err := closeConn()
	if started {
		<-g.done
	}
	return err
}
