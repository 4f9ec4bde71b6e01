package tunnel

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/p2prc/p2prc/portalloc"
	"github.com/p2prc/p2prc/registry"
)

// publicPort is a bound public port of the relay. It lives as long as its
// mapping — across the sessions of its node and, while the lease runs, with
// no session at all, when it refuses visitors at once but stays bound so no
// other program on the host can take it.
type publicPort struct {
	key     portKey
	ln      *net.TCPListener             // a TCP port's listener
	udp     *udpPort                     // a UDP port's socket and flows
	session atomic.Pointer[relaySession] // the node's live session, or nil
}

// close closes the port's socket; its loop ends.
func (pp *publicPort) close() {
	if pp.ln != nil {
		pp.ln.Close()
	}
	if pp.udp != nil {
		pp.udp.conn.Close()
	}
}

// openPort starts serving a granted socket. Call with r.mu held.
func (r *Relay) openPort(g portalloc.Grant) *publicPort {
	pp := &publicPort{key: portKey{g.Network, g.Port}, ln: g.Listener}
	r.ports[pp.key] = pp
	r.wg.Add(1)
	if g.Conn != nil {
		pp.udp = newUDPPort(r, pp, g.Conn)
		go func() {
			defer r.wg.Done()
			pp.udp.serve()
		}()
		return pp
	}
	go func() {
		defer r.wg.Done()
		r.acceptVisitors(pp)
	}()
	return pp
}

// acceptVisitors hands each visitor of pp to the node's session, until the
// port is closed.
func (r *Relay) acceptVisitors(pp *publicPort) {
	var delay time.Duration
	for {
		c, err := pp.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			r.log.Warn("accepting visitors failed; retrying", "port", pp.key, "err", err, "in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if s := pp.session.Load(); s == nil || !s.serveVisitor(pp, c) {
			c.SetLinger(0) // refused at once: the visitor sees a reset
			c.Close()
		}
	}
}

// restorePorts binds again the ports of the mappings in the file, so each
// stays reserved for its node. A port another program took meanwhile is
// reported, and its owner is told when it asks for it.
func (r *Relay) restorePorts() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.maps.List() {
		g, err := r.alloc.Rebind(m.Network(), m.BlindPort)
		if err != nil {
			r.log.Warn("a reserved port is taken on this host; its node will be told", "port", m.BlindPort, "type", m.Type, "node", m.NodeName, "err", err)
			continue
		}
		r.openPort(g)
	}
}

// closePorts closes every public port; their accept loops end.
func (r *Relay) closePorts() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.shuttingDown = true // no port is opened after this
	for k, pp := range r.ports {
		pp.close()
		delete(r.ports, k)
	}
}

// janitor frees the ports whose lease has run out.
func (r *Relay) janitor(ctx interface{ Done() <-chan struct{} }) {
	defer r.wg.Done()
	t := time.NewTicker(max(min(r.cfg.Lease/4, time.Minute), 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.expireLeases(now)
		}
	}
}

// expireLeases removes the mappings whose node has been away longer than the
// lease. A lease restarts when the relay does: no node could reconnect while
// the relay was down.
func (r *Relay) expireLeases(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.maps.List() {
		key := portKey{m.Network(), m.BlindPort}
		pp := r.ports[key]
		if pp != nil && pp.session.Load() != nil {
			continue
		}
		if now.Sub(later(m.LastSeen, r.started)) < r.cfg.Lease {
			continue
		}
		if err := r.maps.Remove(key.network, key.port); err != nil {
			r.log.Error("freeing a port whose lease ran out", "port", key, "err", err)
			continue
		}
		if pp != nil {
			pp.close()
			delete(r.ports, key)
		}
		r.traffic.forget(key)
		r.log.Info("lease ran out; port freed", "port", key, "node", m.NodeName, "last_seen", m.LastSeen.Format(time.RFC3339))
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// newMapping is the record of a fresh grant.
func (r *Relay) newMapping(s *relaySession, network, local string, port int, now time.Time) registry.Mapping {
	return registry.Mapping{
		ServerName: r.cfg.Name,
		Address:    r.cfg.PublicHost,
		Type:       registry.TypeOf(network),
		BlindPort:  port,
		Owner:      s.peer.ID,
		NodeName:   s.peer.Name,
		Local:      local,
		Created:    now,
		LastSeen:   now,
	}
}
