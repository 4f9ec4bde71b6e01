package mux

import (
	"io"
	"net"
	"sync"
	"time"
)

// The gathering writer. yamux's send loop writes one frame at a time and
// waits for each write to finish before it takes the next frame, and the
// stream that sent a frame waits for that too. So when many streams have
// small frames ready (a burst of requests) each costs its own system call,
// and a bulk stream cannot read its next chunk while its last one is being
// written.
//
// The gatherer takes each frame off the send loop: it copies the frame into
// a batch and returns at once, and a flusher goroutine writes the batch.
// With nothing in flight a frame is written at once; under load, the frames
// handed over during one write leave together in the next, and a bulk
// stream reads its next chunk while the last one is written. Copying a
// frame costs less than the system calls and the wake-ups it saves
// (BenchmarkRequestBurst, p2prc bench tcp-1).
const (
	// gatherMax bounds the bytes handed over but not yet taken by the
	// flusher: one of the largest frames tunnel writes (256 KiB) waits
	// while another is written, which is all a bulk stream needs to read
	// while it writes; a frame is always taken when nothing waits. Past
	// it the send loop waits for the flusher, so a connection that cannot
	// keep up pushes back on yamux as before, and a small frame never
	// queues behind more than about two large ones.
	gatherMax = 256 << 10

	// closeFlush bounds how long Close waits for frames handed over (a
	// goodbye message, say) to reach a connection that is still alive.
	closeFlush = time.Second
)

// batches recycles the flusher's buffers across sessions: an idle session
// holds none.
var batches = sync.Pool{New: func() any { return new([]byte) }}

// gatherer owns the writes to a connection. Only yamux's send loop calls
// enqueue; the flusher goroutine is started by the first enqueue and ended
// by close, which waits for it.
type gatherer struct {
	conn io.Writer
	cork *CorkConn // under conn, a TLS connection; nil for plain TCP

	mu      sync.Mutex
	wake    sync.Cond // the flusher waits for work; the send loop for room
	pending *[]byte   // handed over, not yet written; nil when empty
	busy    bool      // the flusher is writing
	err     error     // the first write error; every later call returns it
	closing bool
	started bool
	done    chan struct{} // closed when the flusher has ended
}

func newGatherer(conn io.Writer) *gatherer {
	g := &gatherer{conn: conn, done: make(chan struct{})}
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
	for g.err == nil && !g.closing && g.pending != nil && len(*g.pending)+n > gatherMax {
		g.wake.Wait()
	}
	switch {
	case g.err != nil:
		return g.err
	case g.closing:
		return errGatherClosed
	}
	if g.pending == nil {
		g.pending = batches.Get().(*[]byte)
	}
	*g.pending = append(append(*g.pending, hdr...), body...)
	if !g.started {
		g.started = true
		go g.flush()
	}
	if !g.busy {
		g.wake.Broadcast()
	}
	return nil
}

// flush writes what is handed over, a batch at a time, until close (having
// written what was handed over before it) or the first error.
func (g *gatherer) flush() {
	defer close(g.done)
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		for g.err == nil && !g.closing && g.pending == nil {
			g.wake.Wait()
		}
		if g.err != nil || g.pending == nil {
			return // failed, or closing with nothing left
		}
		batch := g.pending
		g.pending = nil
		g.busy = true
		g.wake.Broadcast() // room for the send loop
		g.mu.Unlock()

		if g.cork != nil {
			g.cork.cork()
		}
		_, err := g.conn.Write(*batch)
		if g.cork != nil {
			if uerr := g.cork.uncork(); err == nil {
				err = uerr
			}
		}
		if cap(*batch) <= 2*gatherMax {
			*batch = (*batch)[:0]
			batches.Put(batch)
		}

		g.mu.Lock()
		g.busy = false
		if err != nil && g.err == nil {
			g.err = err // what follows could not be framed: the connection is done
		}
		g.wake.Broadcast()
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
