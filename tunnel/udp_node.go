package tunnel

import (
	"container/list"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/p2prc/p2prc/mux"
)

// UDP at the node.
//
// Each UDP link the relay opens carries flows of one mapping. For each flow
// the node keeps a UDP socket connected to the local service, so the service
// sees a distinct source address per visitor and its replies, read from
// that socket, belong to that visitor alone. A flow's reader goroutine also
// keeps its idle timer: a flow quiet for the idle timeout is ended, and the
// relay told.

// udpFlowBufSize is the kernel buffer asked for each flow's socket.
const udpFlowBufSize = 1 << 20

// udpBufs holds the buffers flows read replies into: a flow holds one only
// while a datagram is being read and queued.
var udpBufs = sync.Pool{New: func() any { b := make([]byte, maxUDPPayload); return &b }}

// nodeUDPTable is the set of flows of one UDP mapping, across its links, for
// the flow cap.
type nodeUDPTable struct {
	mu    sync.Mutex
	order flowOrder[*nodeFlow]
}

// nodeLink is one UDP link from the relay.
type nodeLink struct {
	s       *nodeSession
	st      *yamux.Stream
	local   *net.UDPAddr
	table   *nodeUDPTable
	q       *udpQueue
	traffic *Traffic       // the mapping's counts
	w       udpWriter      // the frame reader's, for runs of datagrams
	wg      sync.WaitGroup // flow readers

	mu    sync.Mutex
	flows map[uint32]*nodeFlow
	ended bool // the link is closing: no new flows

	localErrs atomic.Uint64 // datagrams the local service's socket refused
}

// nodeFlow is one visitor, seen from the node.
type nodeFlow struct {
	activity
	id      uint32
	visitor netip.AddrPort
	link    *nodeLink
	conn    *net.UDPConn
	elem    *list.Element // in the table's order; guarded by the table's mu
	ended   atomic.Bool
}

// udpTable returns the flow table of the UDP mapping on port.
func (s *nodeSession) udpTable(port int) *nodeUDPTable {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.udp == nil {
		s.udp = make(map[int]*nodeUDPTable)
	}
	t := s.udp[port]
	if t == nil {
		t = &nodeUDPTable{}
		s.udp[port] = t
	}
	return t
}

// serveUDP answers a UDP link for the mapping on port and serves it until
// the relay or the session ends it.
func (s *nodeSession) serveUDP(st *yamux.Stream, port int) {
	s.mu.Lock()
	m, ok := s.mappings[portKey{"udp", port}]
	s.mu.Unlock()
	if !ok {
		st.Write([]byte{byte(mux.StatusUnknownMapping)})
		st.Close()
		return
	}
	local, err := net.ResolveUDPAddr("udp", m.Local)
	if err != nil {
		s.log.Warn("cannot resolve the local UDP service", "local", m.Local, "err", err)
		st.Write([]byte{byte(mux.StatusRefused)})
		st.Close()
		return
	}
	if _, err := st.Write([]byte{byte(mux.StatusOK)}); err != nil {
		st.Close()
		return
	}
	l := &nodeLink{s: s, st: st, local: local, table: s.udpTable(port), q: newUDPQueue(),
		traffic: s.n.traffic.of(portKey{"udp", port}), flows: make(map[uint32]*nodeFlow)}
	l.run()
}

// run carries the link until its stream ends, then ends every flow on it
// and waits for their readers.
func (l *nodeLink) run() {
	written := make(chan struct{})
	go func() {
		defer close(written)
		if err := l.q.writeTo(l.st); err != nil {
			l.abort()
		}
	}()
	l.readFrames()
	l.abort()
	<-written
	l.mu.Lock()
	l.ended = true
	flows := make([]*nodeFlow, 0, len(l.flows))
	for _, f := range l.flows {
		flows = append(flows, f)
	}
	l.mu.Unlock()
	for _, f := range flows {
		l.end(f, false)
	}
	l.wg.Wait()
	l.st.Close()
	if n, e := l.q.dropped.Load(), l.localErrs.Load(); n > 0 || e > 0 {
		l.s.log.Info("UDP link closed", "local", l.local.String(), "dropped_tunnel_full", n, "local_send_errors", e)
	}
}

// abort ends the link's stream at once, both ways.
func (l *nodeLink) abort() {
	l.q.abort()
	l.st.SetDeadline(time.Now())
	l.st.Close()
}

// readFrames handles the relay's frames until the stream ends.
func (l *nodeLink) readFrames() {
	d := mux.NewDatagramReader(l.st, udpReadBufSize)
	const maxRun = 64
	run := make([][]byte, 0, maxRun)
	for {
		g, err := d.Next()
		if err != nil {
			return
		}
		switch g.Type {
		case mux.DatagramData:
			l.mu.Lock()
			f := l.flows[g.Flow]
			l.mu.Unlock()
			if f == nil {
				// Ended here while the datagram was on its way: tell the
				// relay (again), so the visitor's next datagram opens anew.
				l.q.put(mux.DatagramClose, g.Flow, nil)
				continue
			}
			f.touch(time.Now().UnixNano())
			// Send the whole run of this flow's datagrams at hand at once.
			run = append(run[:0], g.Payload)
			for t, flow, ok := d.Peek(); ok && t == mux.DatagramData && flow == g.Flow && len(run) < maxRun; t, flow, ok = d.Peek() {
				g, _ := d.Next()
				run = append(run, g.Payload)
			}
			if failed := l.w.write(f.conn, run); failed > 0 {
				l.localErrs.Add(uint64(failed)) // the service is down or full: the visitor hears nothing
			}
			for _, p := range run {
				l.traffic.AddIn(len(p))
			}
		case mux.DatagramOpen:
			l.open(g.Flow, g.Payload)
		case mux.DatagramClose:
			l.mu.Lock()
			f := l.flows[g.Flow]
			l.mu.Unlock()
			if f != nil {
				l.end(f, false)
			}
		}
	}
}

// open starts a flow: a socket connected to the local service, and its
// reader. A flow the node cannot take is closed back to the relay.
func (l *nodeLink) open(id uint32, payload []byte) {
	refuse := func() { l.q.put(mux.DatagramClose, id, nil) }
	visitor, err := mux.OpenVisitor(payload)
	if err != nil {
		refuse()
		return
	}
	l.mu.Lock()
	_, dup := l.flows[id]
	l.mu.Unlock()
	if dup {
		return
	}
	now := time.Now().UnixNano()
	f := &nodeFlow{id: id, visitor: visitor, link: l}
	f.touch(now)
	if !l.admit(f, now) {
		refuse()
		return
	}
	c, err := net.DialUDP("udp", nil, l.local)
	if err != nil {
		l.s.log.Debug("cannot open a socket to the local UDP service", "local", l.local.String(), "err", err)
		l.forget(f)
		refuse()
		return
	}
	setUDPBuffers(c, udpFlowBufSize)
	f.conn = c
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		l.forget(f)
		c.Close()
		return
	}
	l.flows[id] = f
	l.wg.Add(1)
	l.traffic.FlowOpened()
	l.mu.Unlock()
	go func() {
		defer l.wg.Done()
		l.readReplies(f)
	}()
}

// admit takes f into the mapping's table, replacing the oldest quiet flow
// when the table is at its cap; it reports false when there is none.
func (l *nodeLink) admit(f *nodeFlow, now int64) bool {
	t := l.table
	t.mu.Lock()
	var victim *nodeFlow
	if t.order.len() >= l.s.n.cfg.UDPMaxFlows {
		v, ok := t.order.victim(now, evictIdle(l.s.n.cfg.UDPIdle))
		if !ok {
			t.mu.Unlock()
			return false
		}
		t.order.remove(v.elem)
		v.elem = nil
		victim = v
	}
	f.elem = t.order.push(f)
	t.mu.Unlock()
	if victim != nil {
		victim.link.end(victim, true)
	}
	return true
}

// forget removes f from the mapping's table.
func (l *nodeLink) forget(f *nodeFlow) {
	l.table.mu.Lock()
	if f.elem != nil {
		l.table.order.remove(f.elem)
		f.elem = nil
	}
	l.table.mu.Unlock()
}

// end frees flow f; tell sends the relay a close frame for it.
func (l *nodeLink) end(f *nodeFlow, tell bool) {
	if !f.ended.CompareAndSwap(false, true) {
		return
	}
	l.mu.Lock()
	if l.flows[f.id] == f {
		delete(l.flows, f.id)
	}
	l.mu.Unlock()
	l.forget(f)
	f.conn.Close()
	l.traffic.FlowClosed()
	if tell {
		l.q.put(mux.DatagramClose, f.id, nil)
	}
}

// readReplies queues the local service's replies to f's visitor until the
// flow ends, and ends it once it has been quiet for the idle timeout.
func (l *nodeLink) readReplies(f *nodeFlow) {
	idle := l.s.n.cfg.UDPIdle
	rc, err := f.conn.SyscallConn()
	if err != nil {
		l.end(f, true)
		return
	}
	f.conn.SetReadDeadline(time.Now().Add(idle))
	for {
		buf, n, err := readDatagram(f.conn, rc)
		now := time.Now()
		switch {
		case err == nil:
			f.touch(now.UnixNano())
			if l.q.putData(f.id, (*buf)[:n], now.UnixNano()) { // a full or stuck queue drops and counts
				l.traffic.AddOut(n)
			}
			udpBufs.Put(buf)
		case errors.Is(err, os.ErrDeadlineExceeded):
			quiet := f.quietFor(now.UnixNano())
			if quiet >= idle {
				l.end(f, true)
				return
			}
			f.conn.SetReadDeadline(now.Add(idle - quiet))
		case errors.Is(err, net.ErrClosed):
			return // ended by the relay, the cap or the link
		case isICMPError(err):
			// The local service is not listening (an ICMP error came back):
			// the visitor hears silence, and the flow lives on in case the
			// service comes back.
		default:
			l.s.log.Debug("reading from the local UDP service", "local", l.local.String(), "err", err)
			l.end(f, true)
			return
		}
	}
}

// isICMPError reports whether err is an ICMP error reported on a connected
// UDP socket: the far end or the way to it is down, for now.
func isICMPError(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTDOWN)
}
