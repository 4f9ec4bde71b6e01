package tunnel

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/p2prc/p2prc/mux"
)

// pipe joins one TCP connection (a visitor's at the relay, the local
// service's at the node) to the yamux stream that carries it, until both
// directions are done.
//
// A clean end of input in one direction (EOF) is passed on as a half-close,
// so a client that shuts down writing still gets its reply. Any error ends
// both directions at once, and onAbort tells the other end to do the same.
type pipe struct {
	conn    *net.TCPConn
	stream  *yamux.Stream
	onAbort func() // tells the peer to abort its end; may be nil

	// awaitStatus makes streamToConn read the node's status byte before any
	// data (the relay's end); a refusal aborts the pipe.
	awaitStatus bool

	// fromConn and fromStream count the bytes copied out of conn and out
	// of stream as they go (see Traffic.count); nil counts nothing.
	fromConn, fromStream *atomic.Uint64

	abortOnce sync.Once
	told      bool // this end aborted and sent the peer a reset; set in abortOnce
}

// resetWait bounds how long an end that sent a reset waits for the peer's
// FIN before sending its own (see abort).
const resetWait = 5 * time.Second

func newPipe(conn *net.TCPConn, stream *yamux.Stream, onAbort func()) *pipe {
	return &pipe{conn: conn, stream: stream, onAbort: onAbort}
}

// run copies both ways and returns when both directions have ended and both
// ends are closed.
func (p *pipe) run() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.connToStream()
	}()
	p.streamToConn()
	<-done
	p.conn.Close()
	p.stream.Close()
}

// connToStream copies the TCP connection into the stream; at its EOF the
// stream is half-closed.
func (p *pipe) connToStream() {
	if err := copyAdaptive(p.stream, p.conn, nil, p.fromConn); err != nil {
		p.abort(true)
		return
	}
	p.stream.Close() // yamux Close sends FIN: our half only
}

// streamToConn copies the stream into the TCP connection; at its EOF the
// connection is half-closed.
func (p *pipe) streamToConn() {
	if p.awaitStatus {
		var st [1]byte
		if _, err := io.ReadFull(p.stream, st[:]); err != nil || mux.Status(st[0]) != mux.StatusOK {
			p.abort(false) // the node refused or vanished; it needs no reset
			return
		}
	}
	if err := copyAdaptive(p.conn, p.stream, p.stream, p.fromStream); err != nil {
		p.abort(true)
		p.awaitPeerFIN()
		return
	}
	p.conn.CloseWrite()
}

// awaitPeerFIN, after this end sent a reset, reads and drops what the
// stream still brings until the peer — told of the reset — closes its end,
// or resetWait passes. Only then may run send our FIN (see abort).
func (p *pipe) awaitPeerFIN() {
	if !p.told {
		return
	}
	p.stream.SetReadDeadline(time.Now().Add(resetWait))
	io.Copy(io.Discard, p.stream)
}

// abort ends both directions now: the connection is reset (its peer sees a
// reset, not a clean end). tellPeer sends a reset to the other end of the
// stream, unless the abort came from there.
//
// An end that sends a reset does not send its FIN yet: the other end
// would take a FIN for a clean end of data and might pass a truncated
// transfer on as whole before the reset, which travels on another stream,
// is read. It waits for the other end's FIN instead (awaitPeerFIN), which
// that end sends as soon as it has the reset. An end told of a reset, or
// refused by the node, closes its stream at once.
func (p *pipe) abort(tellPeer bool) {
	p.abortOnce.Do(func() {
		p.conn.SetLinger(0)
		p.conn.Close()
		p.stream.SetWriteDeadline(time.Now()) // unblocks our own pending Write
		if tellPeer && p.onAbort != nil {
			p.told = true
			p.stream.SetReadDeadline(time.Now().Add(resetWait)) // a peer that never answers
			p.onAbort()
			return
		}
		p.stream.SetReadDeadline(time.Now()) // unblocks our own pending Read
		p.stream.Close()
	})
}

// copyAdaptive copies src to dst until src's EOF (returned as nil) or an
// error. When shrink is set, the stream's receive buffer is released each
// time the copy falls idle. When counted is set, each chunk written adds to
// it at once, so metrics move while data flows.
func copyAdaptive(dst io.Writer, src io.Reader, shrink *yamux.Stream, counted *atomic.Uint64) error {
	small := smallBuf()
	defer small.release()
	buf := *small.b
	var busy copyBuf // borrowed while the direction is busy (see buffers.go)
	defer func() { busy.release() }()
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			if counted != nil && w > 0 {
				counted.Add(uint64(w))
			}
			if werr != nil {
				return werr
			}
		}
		switch {
		case n == len(buf) && busy.b == nil:
			busy = busyBuf()
			buf = *busy.b
		case n < smallBufSize && busy.b != nil:
			busy.release()
			busy, buf = copyBuf{}, *small.b
			if shrink != nil {
				shrink.Shrink()
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return nil
			}
			return rerr
		}
	}
}
