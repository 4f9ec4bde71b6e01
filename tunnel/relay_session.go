package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/portalloc"
)

// maxLocalLen caps the local target a node may record in a mapping.
const maxLocalLen = 255

// relaySession is one authenticated node connection, seen from the relay.
type relaySession struct {
	r      *Relay
	peer   mux.Peer
	remote string
	since  time.Time // when the node authenticated
	ym     *yamux.Session
	ctrl   *mux.Conn
	wire   *mux.Wire
	log    *slog.Logger
	pipes  pipes

	ports []*publicPort // ports attached to this session; guarded by r.mu

	tasks group // visitor pipes and helpers

	visitors      atomic.Int64 // visitor streams in flight, capped by Limits.StreamsPerSession
	lastBusyToldN atomic.Int64 // when the node was last told visitors were refused (UnixNano)

	closeOnce sync.Once
	reason    string // why the session ended; set once, under closeOnce

	exchanged bool // the node sent its exchange; touched by serveControl only
}

func newRelaySession(r *Relay, peer mux.Peer, remote string, ym *yamux.Session, ctrl *mux.Conn, wire *mux.Wire) *relaySession {
	return &relaySession{
		r: r, peer: peer, remote: remote, ym: ym, ctrl: ctrl, wire: wire, since: time.Now(),
		log: r.log.With("node", peer.Name, "id", peer.ID[:8], "remote", remote),
	}
}

// run serves the control stream until the session ends, then closes
// everything the session holds and waits for it. It returns why it ended.
func (s *relaySession) run(ctx context.Context) string {
	stop := context.AfterFunc(ctx, func() { s.close(mux.CodeShutdown, "the relay is shutting down") })
	s.tasks.spawn(func() {
		watchPeer(s.ym.CloseChan(), s.wire, s.r.cfg.PeerTimeout, func(silent time.Duration) {
			s.close(mux.CodeTimeout, fmt.Sprintf("the node sent nothing for %v", silent.Round(time.Second)))
		})
	})
	err := s.serveControl()
	stop()
	reason := describeEnd(err)
	if silent, ok := silentPeer(s.wire, s.r.cfg.PeerTimeout); ok {
		reason = fmt.Sprintf("the node sent nothing for %v", silent.Round(time.Second))
	}
	s.close("", reason)
	s.tasks.closeAndWait()
	return s.reason
}

// serveControl reads control messages until the stream fails or the node
// closes the session.
func (s *relaySession) serveControl() error {
	for {
		if s.ym.IsClosed() {
			return yamux.ErrSessionShutdown // frames still buffered are not served
		}
		m, err := s.ctrl.Recv()
		switch {
		case errors.Is(err, mux.ErrUnknownType):
			s.ctrl.Send(&mux.Error{Code: mux.CodeUnknownMessage, Text: err.Error()})
			continue
		case errors.Is(err, mux.ErrMalformed):
			s.ctrl.Send(&mux.Error{Code: mux.CodeBadRequest, Text: err.Error()})
			continue
		case errors.Is(err, mux.ErrFrameTooLarge):
			max := s.r.cfg.Limits.MaxFrameSize
			s.r.refusals.note(s.log, limitFrameSize, max)
			s.close(mux.CodeLimit, fmt.Sprintf("%v; the relay's limit is --max-frame-size %d", err, max))
			return err
		case err != nil:
			return err
		}
		switch m := m.(type) {
		case *mux.Expose:
			s.answerExpose(m)
		case *mux.Exchange:
			s.answerExchange(m)
		case *mux.ListMappings:
			s.answerListMappings(m)
		case *mux.Release:
			s.answerRelease(m)
		case *mux.Ping:
			s.ctrl.Send(&mux.Pong{Seq: m.Seq})
		case *mux.Pong:
		case *mux.Reset:
			s.pipes.reset(m.Stream)
		case *mux.Close:
			return fmt.Errorf("node closed the session: %s", m.Reason)
		case *mux.Error:
			s.log.Debug("node reported an error", "code", m.Code, "text", m.Text) // the node's to act on; a line each would let it fill our log
		default:
			s.ctrl.Send(&mux.Error{Code: mux.CodeBadRequest, Text: fmt.Sprintf("a relay does not accept %v messages", m.Type())})
		}
	}
}

// answerExpose grants a port or says why not.
func (s *relaySession) answerExpose(req *mux.Expose) {
	if s.peer.Query {
		s.ctrl.Send(&mux.Error{ID: req.ID, Code: mux.CodeBadRequest, Text: "a query session cannot expose; connect as a node"})
		return
	}
	g, refusal := s.r.expose(s, req)
	if refusal != nil {
		refusal.ID = req.ID
		s.r.cfg.Observer.Refused(refusal.Code)
		s.log.Info("refused", "type", req.Network, "local", req.Local, "wanted", req.WantedPort, "code", refusal.Code, "why", refusal.Text)
		s.ctrl.Send(refusal)
		return
	}
	g.ID = req.ID
	s.r.cfg.Observer.Granted(g.Network)
	s.log.Info("granted", "type", g.Network, "port", g.Port, "local", req.Local)
	s.ctrl.Send(g)
}

// serveVisitor carries visitor c of port pp to the node. It reports false if
// the session is ending.
func (s *relaySession) serveVisitor(pp *publicPort, c *net.TCPConn) bool {
	if max := s.r.cfg.Limits.StreamsPerSession; s.visitors.Add(1) > int64(max) {
		s.visitors.Add(-1)
		c.SetLinger(0)
		c.Close()
		s.r.refusals.note(s.log, limitStreamsPerSession, max, "port", pp.key, "visitor", c.RemoteAddr().String())
		s.tellVisitorsRefused(max)
		return true
	}
	ok := s.tasks.spawn(func() {
		defer s.visitors.Add(-1)
		s.pipeVisitor(pp, c)
	})
	if !ok {
		s.visitors.Add(-1)
	}
	return ok
}

// busyToldEvery bounds how often a node is told that visitors were refused.
const busyToldEvery = time.Minute

// tellVisitorsRefused tells the node, at most once a minute, that visitors
// are being turned away because it has max in flight.
func (s *relaySession) tellVisitorsRefused(max int) {
	now := time.Now().UnixNano()
	last := s.lastBusyToldN.Load()
	if last != 0 && time.Duration(now-last) < busyToldEvery {
		return
	}
	if !s.lastBusyToldN.CompareAndSwap(last, now) {
		return
	}
	s.tasks.spawn(func() {
		s.ctrl.Send(&mux.Error{Code: mux.CodeBusy, Text: fmt.Sprintf(
			"the relay is turning visitors away: %d are already in flight to this node, its limit (--max-streams-per-session)", max)})
	})
}

func (s *relaySession) pipeVisitor(pp *publicPort, c *net.TCPConn) {
	st, err := s.ym.OpenStream()
	if err != nil {
		c.SetLinger(0)
		c.Close()
		return
	}
	hdr := mux.StreamHeader{
		Kind:    mux.KindTCP,
		Port:    uint16(pp.key.port),
		Visitor: unmap(c.RemoteAddr().(*net.TCPAddr).AddrPort()),
	}
	b, _ := hdr.AppendBinary(nil)
	id := st.StreamID()
	p := newPipe(c, st, func() { s.ctrl.Send(&mux.Reset{Stream: id}) })
	p.awaitStatus = true
	traffic := s.r.traffic.of(pp.key)
	traffic.countAtRelay(p)
	if _, err := st.Write(b); err != nil || !s.pipes.add(id, p) {
		c.SetLinger(0)
		c.Close()
		st.Close()
		return
	}
	defer s.pipes.remove(id)
	traffic.ConnOpened()
	defer traffic.ConnClosed()
	p.run()
}

// unmap shows an IPv4 visitor of a dual-stack port as IPv4.
func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// close ends the session: it tells the node why (bounded in time), aborts
// every pipe and closes the yamux session. Only the first call counts.
func (s *relaySession) close(code mux.ErrorCode, reason string) {
	s.closeOnce.Do(func() {
		s.reason = reason
		endSession(s.ctrl, s.ym, &s.pipes, &mux.Close{Code: code, Reason: reason})
	})
}

// expose decides one request: the port this node already holds for the
// service, a wanted port, or one the allocator chooses.
func (r *Relay) expose(s *relaySession, req *mux.Expose) (*mux.Grant, *mux.Error) {
	if req.Network != "tcp" && req.Network != "udp" {
		return nil, &mux.Error{Code: mux.CodeBadRequest, Text: fmt.Sprintf("type %q is not supported by this relay; use tcp or udp", req.Network)}
	}
	if req.Local == "" || len(req.Local) > maxLocalLen {
		return nil, &mux.Error{Code: mux.CodeBadRequest, Text: "the local target must be host:port, at most 255 bytes"}
	}
	owner := s.peer.ID
	now := time.Now()

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shuttingDown {
		return nil, &mux.Error{Code: mux.CodeShutdown, Text: "the relay is shutting down"}
	}
	if r.sessions[owner] != s {
		return nil, &mux.Error{Code: mux.CodeReplaced, Text: "this session was replaced by a newer one of the same node"}
	}
	// Sticky ports: the same node exposing the same service gets its port back.
	if m, ok := r.maps.Find(owner, req.Network, req.Local); ok && (req.WantedPort == 0 || req.WantedPort == m.BlindPort) {
		return r.attach(s, m.BlindPort, req, now)
	}
	// A wanted port this node holds for another service moves to this one.
	if m, ok := r.maps.Lookup(req.Network, req.WantedPort); ok && m.Owner == owner {
		return r.attach(s, m.BlindPort, req, now)
	}
	if refused := r.checkMappingLimits(s, req); refused != nil {
		return nil, refused
	}
	g, err := r.alloc.Allocate(req.Network, owner, req.WantedPort)
	if err != nil {
		return nil, refusal(err)
	}
	if err := r.maps.Put(r.newMapping(s, req.Network, req.Local, g.Port, now)); err != nil {
		g.Close()
		r.log.Error("recording a mapping", "err", err)
		return nil, &mux.Error{Code: mux.CodeInternal, Text: "the relay could not record the mapping; try again later"}
	}
	return r.bind(s, r.openPort(g), req.Network, g.Port), nil
}

// checkMappingLimits refuses a new mapping beyond MappingsPerNode or
// Mappings. Call with r.mu held.
func (r *Relay) checkMappingLimits(s *relaySession, req *mux.Expose) *mux.Error {
	all := r.maps.List()
	mine := 0
	for _, m := range all {
		if m.Owner == s.peer.ID {
			mine++
		}
	}
	l := r.cfg.Limits
	switch {
	case mine >= l.MappingsPerNode:
		r.refusals.note(s.log, limitMappingsPerNode, l.MappingsPerNode, "type", req.Network, "local", req.Local)
		return &mux.Error{Code: mux.CodeLimit, Text: fmt.Sprintf(
			"this node already holds %d mappings on this relay, its limit (--max-mappings-per-node), leased ones included; release one with p2prc node --release, or ask the relay's operator", mine)}
	case len(all) >= l.Mappings:
		r.refusals.note(s.log, limitMappings, l.Mappings, "type", req.Network, "local", req.Local)
		return &mux.Error{Code: mux.CodeBusy, Text: fmt.Sprintf(
			"this relay holds %d mappings, its limit (--max-mappings); ports free up as leases run out, so the node asks again later", len(all))}
	}
	return nil
}

// attach gives s the mapping on port, re-binding the port if the relay could
// not keep it, and records the grant. Call with r.mu held.
func (r *Relay) attach(s *relaySession, port int, req *mux.Expose, now time.Time) (*mux.Grant, *mux.Error) {
	key := portKey{req.Network, port}
	pp := r.ports[key]
	if pp == nil {
		g, err := r.alloc.Rebind(key.network, key.port)
		if err != nil {
			return nil, &mux.Error{Code: mux.CodeInUse, Text: fmt.Sprintf(
				"port %v, which this relay keeps for you, is taken by another program on the relay host; ask its operator to free it, or remove the mapping to get another port", key)}
		}
		pp = r.openPort(g)
	}
	old, _ := r.maps.Lookup(key.network, key.port)
	m := old
	m.ServerName, m.Address = r.cfg.Name, r.cfg.PublicHost
	m.NodeName, m.Local, m.LastSeen = s.peer.Name, req.Local, now
	// The same expose again in one session changes nothing worth a write.
	again := pp.session.Load() == s && old.ServerName == m.ServerName && old.Address == m.Address &&
		old.NodeName == m.NodeName && old.Local == m.Local
	if !again {
		if err := r.maps.Put(m); err != nil {
			r.log.Error("recording a mapping", "err", err)
			return nil, &mux.Error{Code: mux.CodeInternal, Text: "the relay could not record the mapping; try again later"}
		}
	}
	return r.bind(s, pp, key.network, port), nil
}

// bind hands the open port pp, whose mapping is recorded, to session s and
// returns the grant. Call with r.mu held.
func (r *Relay) bind(s *relaySession, pp *publicPort, network string, port int) *mux.Grant {
	pp.session.Store(s)
	if !slices.Contains(s.ports, pp) {
		s.ports = append(s.ports, pp)
	}
	return &mux.Grant{Network: network, Port: port, PublicHost: r.cfg.PublicHost, Relay: r.cfg.Name}
}

// refusal turns an allocator error into what the node is told.
func refusal(err error) *mux.Error {
	code := mux.CodeInternal
	switch {
	case errors.Is(err, portalloc.ErrOutOfRange):
		code = mux.CodeOutOfRange
	case errors.Is(err, portalloc.ErrOwned):
		code = mux.CodeOwned
	case errors.Is(err, portalloc.ErrInUse):
		code = mux.CodeInUse
	case errors.Is(err, portalloc.ErrExhausted):
		code = mux.CodeExhausted
	}
	return &mux.Error{Code: code, Text: err.Error()}
}

// describeEnd says in a few words why a control stream ended.
func describeEnd(err error) string {
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return "connection closed"
	case errors.Is(err, yamux.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "the peer went silent (no ping within the peer timeout)"
	case errors.Is(err, yamux.ErrSessionShutdown), errors.Is(err, net.ErrClosed):
		return "connection closed"
	}
	return err.Error()
}
