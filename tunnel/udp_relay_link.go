package tunnel

import (
	"io"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/p2prc/p2prc/mux"
)

// The relay's end of a UDP link: the stream to the node, the queue feeding
// it, and the reader that sends the node's replies to visitors.

// relayLink is one UDP link to the node: a stream, the queue feeding it, and
// the flows it carries.
type relayLink struct {
	p       *udpPort
	s       *relaySession
	q       *udpQueue
	perFlow bool                  // the link carries one flow and ends with it
	flows   map[uint32]*relayFlow // guarded by p.mu
	dead    atomic.Bool           // the stream has ended; its flows are gone
}

// run opens the link's stream and writes queued frames to it until the link
// ends; then it forgets the link's flows.
func (l *relayLink) run() {
	defer l.forgetFlows()
	st, err := l.s.ym.OpenStream()
	if err != nil {
		l.q.abort()
		return
	}
	hdr, _ := mux.StreamHeader{Kind: mux.KindUDP, Port: uint16(l.p.pp.key.port)}.AppendBinary(nil)
	if _, err := st.Write(hdr); err != nil {
		l.q.abort()
		st.Close()
		return
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		l.readReplies(st)
	}()
	if err := l.q.writeTo(st); err != nil {
		l.die(st)
	}
	st.Close() // our half: the node ends its end and closes too
	select {
	case <-read:
	case <-time.After(linkLinger):
		l.die(st)
		<-read
	}
}

// linkLinger bounds how long a finished link waits for the node to close
// its half.
const linkLinger = 5 * time.Second

// die ends the link at once, both ways.
func (l *relayLink) die(st *yamux.Stream) {
	l.dead.Store(true)
	l.q.abort()
	st.SetDeadline(time.Now()) // unblocks our own pending Read and Write
	st.Close()
}

// readReplies reads the node's status, then its frames, sending each reply
// to its flow's visitor.
func (l *relayLink) readReplies(st *yamux.Stream) {
	defer l.die(st)
	var status [1]byte
	if _, err := io.ReadFull(st, status[:]); err != nil || mux.Status(status[0]) != mux.StatusOK {
		l.p.mu.Lock()
		l.p.retry = time.Now().Add(linkRetryDelay).UnixNano()
		l.p.mu.Unlock()
		return
	}
	d := mux.NewDatagramReader(st, udpReadBufSize)
	const maxRun = 64
	var (
		w        udpWriter
		payloads = make([][]byte, 0, maxRun)
		to       = make([]netip.AddrPort, 0, maxRun)
	)
	for {
		g, err := d.Next()
		if err != nil {
			return
		}
		switch g.Type {
		case mux.DatagramData:
			// Send the run of replies at hand at once, each to its flow's
			// visitor; a reply for a flow ended here is dropped.
			payloads, to = payloads[:0], to[:0]
			now := time.Now().UnixNano()
			l.p.mu.Lock()
			for {
				if f := l.flows[g.Flow]; f != nil {
					f.touch(now)
					payloads, to = append(payloads, g.Payload), append(to, f.visitor)
					l.p.traffic.AddOut(len(g.Payload))
				}
				if t, _, ok := d.Peek(); !ok || t != mux.DatagramData || len(payloads) == maxRun {
					break
				}
				g, _ = d.Next()
			}
			l.p.mu.Unlock()
			w.writeTo(l.p.conn, payloads, to)
		case mux.DatagramClose:
			l.p.mu.Lock()
			if f := l.flows[g.Flow]; f != nil {
				l.p.forget(f)
				if l.perFlow {
					l.q.close()
				}
			}
			l.p.mu.Unlock()
		}
	}
}

// forgetFlows removes the flows of a link that has ended.
func (l *relayLink) forgetFlows() {
	l.dead.Store(true)
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	for _, f := range l.flows {
		l.p.forget(f)
	}
	if l.p.link == l {
		l.p.link = nil
	}
}
