package tunnel

import (
	"container/list"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2prc/p2prc/mux"
)

// UDP at the relay.
//
// A public UDP port has one read loop. It sorts each datagram into a flow by
// the visitor's address and queues it on the flow's UDP link to the node
// without ever waiting: a link that cannot keep up drops and counts. A link
// is a yamux stream of kind UDP carrying datagram frames (mux/datagram.go);
// by default one link per mapping and session carries every flow of the
// mapping (see udpStreamPerFlow for the alternative that was measured). The
// link's reader sends each reply to its flow's visitor, and only to a live
// flow's visitor: a node cannot make the relay send anywhere else.
//
// A flow ends when it has been quiet for the idle timeout (the port loop
// sweeps), when the node ends it, when a new visitor takes its place at the
// flow cap, or when its link or session ends. Either end that ends a flow
// tells the other with a close frame, so both free it.

// udpPortBufSize is the kernel buffer asked for each public UDP socket.
const udpPortBufSize = 4 << 20

// linkRetryDelay is how long a port waits before opening a new link after
// the node refused one (it had not yet recorded the grant, say).
const linkRetryDelay = 100 * time.Millisecond

// udpDrops counts the datagrams a public UDP port could not carry.
type udpDrops struct {
	noNode     atomic.Uint64 // the mapping's node was away
	flowCap    atomic.Uint64 // a new visitor at the flow cap, with no quiet flow to replace
	tunnelFull atomic.Uint64 // the link's queue was full
}

// udpPort is a bound public UDP port and its flows.
type udpPort struct {
	r       *Relay
	pp      *publicPort
	conn    *net.UDPConn
	idle    time.Duration
	traffic *Traffic // the mapping's counts

	mu     sync.Mutex
	flows  map[netip.AddrPort]*relayFlow
	order  flowOrder[*relayFlow]
	link   *relayLink // the shared link, when links are per mapping
	nextID uint32
	retry  int64 // unix ns before which no new link is opened

	drops  udpDrops
	logged [3]uint64 // drops as last logged
}

// relayFlow is one visitor of a public UDP port.
type relayFlow struct {
	activity
	id      uint32
	visitor netip.AddrPort
	link    *relayLink
	elem    *list.Element // in the port's order
}

func newUDPPort(r *Relay, pp *publicPort, conn *net.UDPConn) *udpPort {
	setUDPBuffers(conn, udpPortBufSize)
	return &udpPort{r: r, pp: pp, conn: conn, idle: r.cfg.UDPIdle, traffic: r.traffic.of(pp.key), flows: make(map[netip.AddrPort]*relayFlow)}
}

// serve reads visitors' datagrams until the port is closed.
func (p *udpPort) serve() {
	defer p.forgetAll()
	rd := newUDPReader(p.conn)
	every := sweepInterval(p.idle)
	next := time.Now().Add(every)
	p.conn.SetReadDeadline(next)
	for {
		n, err := rd.read()
		now := time.Now()
		switch {
		case err == nil:
			p.forward(rd, n, now.UnixNano())
			rd.release()
		case errors.Is(err, net.ErrClosed):
			return
		case !errors.Is(err, os.ErrDeadlineExceeded):
			p.r.log.Debug("reading a public UDP port", "port", p.pp.key, "err", err)
			time.Sleep(5 * time.Millisecond) // whatever it is, don't spin on it
		}
		if now.After(next) {
			p.sweep(now.UnixNano())
			next = now.Add(every)
			p.conn.SetReadDeadline(next)
		}
	}
}

// sweepInterval is how often a port looks for expired flows: a flow ends
// between idle and idle×1.25 after its last datagram.
func sweepInterval(idle time.Duration) time.Duration {
	return min(max(idle/4, 10*time.Millisecond), 15*time.Second)
}

// forward queues n visitor datagrams just read on their flows' links,
// making flows for new visitors. It never waits.
func (p *udpPort) forward(rd *udpReader, n int, now int64) {
	s := p.pp.session.Load()
	if s == nil {
		p.drops.noNode.Add(uint64(n))
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range n {
		data, from := rd.datagram(i)
		from = unmap(from)
		f := p.flows[from]
		if f != nil && (f.link.s != s || f.link.dead.Load()) {
			p.forget(f) // its node reconnected, or its link died
			f = nil
		}
		if f == nil {
			if f = p.newFlow(s, from, now); f == nil {
				continue
			}
		}
		f.touch(now)
		if !f.link.q.putData(f.id, data, now) {
			p.drops.tunnelFull.Add(1)
			continue
		}
		p.traffic.AddIn(len(data))
	}
}

// newFlow makes a flow for a new visitor, or reports nil (counted) when the
// mapping is at its cap with no quiet flow to replace, or no link can take
// it. Call with p.mu held.
func (p *udpPort) newFlow(s *relaySession, from netip.AddrPort, now int64) *relayFlow {
	if p.order.len() >= p.r.cfg.UDPMaxFlows {
		v, ok := p.order.victim(now, evictIdle(p.idle))
		if !ok {
			p.drops.flowCap.Add(1)
			return nil
		}
		p.end(v)
	}
	l := p.linkFor(s, now)
	if l == nil {
		p.drops.tunnelFull.Add(1)
		return nil
	}
	p.nextID++
	f := &relayFlow{id: p.nextID, visitor: from, link: l}
	if !l.q.put(mux.DatagramOpen, f.id, visitorBytes(from)) {
		p.drops.tunnelFull.Add(1)
		if l.perFlow {
			l.q.abort()
		}
		return nil
	}
	f.elem = p.order.push(f)
	p.flows[from] = f
	l.flows[f.id] = f
	p.traffic.FlowOpened()
	return f
}

// visitorBytes is the payload of an open frame: the visitor's address.
func visitorBytes(visitor netip.AddrPort) []byte {
	b, _ := visitor.MarshalBinary()
	return b
}

// linkFor returns the link a new flow of session s rides, opening one if
// needed. Call with p.mu held.
func (p *udpPort) linkFor(s *relaySession, now int64) *relayLink {
	perFlow := p.r.cfg.udpStreamPerFlow
	if !perFlow && p.link != nil && p.link.s == s && !p.link.dead.Load() {
		return p.link
	}
	if now < p.retry {
		return nil
	}
	l := &relayLink{p: p, s: s, q: newUDPQueue(), perFlow: perFlow, flows: make(map[uint32]*relayFlow)}
	if !s.tasks.spawn(l.run) {
		return nil
	}
	if !perFlow {
		p.link = l
	}
	return l
}

// end ends flow f at the relay's initiative and tells the node. Call with
// p.mu held.
func (p *udpPort) end(f *relayFlow) {
	p.forget(f)
	f.link.q.put(mux.DatagramClose, f.id, nil) // if this is lost, the node's own idle timer ends the flow
	if f.link.perFlow {
		f.link.q.close()
	}
}

// forget removes f from the port's tables. Call with p.mu held.
func (p *udpPort) forget(f *relayFlow) {
	if p.flows[f.visitor] == f {
		delete(p.flows, f.visitor)
	}
	if f.elem != nil {
		p.order.remove(f.elem)
		f.elem = nil
		p.traffic.FlowClosed()
	}
	delete(f.link.flows, f.id)
}

// sweep ends the flows that have been quiet for the idle timeout, and logs
// what was dropped since the last sweep.
func (p *udpPort) sweep(now int64) {
	p.mu.Lock()
	for _, f := range p.flows {
		if f.quietFor(now) >= p.idle {
			p.end(f)
		}
	}
	p.mu.Unlock()
	cur := [3]uint64{p.drops.noNode.Load(), p.drops.flowCap.Load(), p.drops.tunnelFull.Load()}
	if cur != p.logged {
		p.r.log.Info("UDP datagrams dropped", "port", p.pp.key,
			"node_away", cur[0]-p.logged[0], "flow_cap", cur[1]-p.logged[1], "tunnel_full", cur[2]-p.logged[2])
		p.logged = cur
	}
}

// forgetAll drops every flow when the port closes; links end with their
// sessions.
func (p *udpPort) forgetAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.flows {
		p.end(f)
	}
	if p.link != nil {
		p.link.q.close()
	}
}
