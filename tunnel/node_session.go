package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/registry"
)

// localDialer dials the node's local services for visitors, within 5 s.
// No keepalive: the service is on this host or its LAN, and a visitor that
// vanishes is noticed by the relay's keepalive and reset through; Go's
// default would cost four system calls per visitor.
var localDialer = net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1}

// nodeSession is one connection of a node to its relay.
type nodeSession struct {
	n       *Node
	ym      *yamux.Session
	ctrl    *mux.Conn
	wire    *mux.Wire
	welcome *mux.Welcome
	relay   string        // the relay's control address
	latency time.Duration // the relay's, measured on connecting
	log     *slog.Logger
	pipes   pipes
	done    chan struct{} // closed when the session is closing

	mu       sync.Mutex
	mappings map[portKey]registry.Mapping // granted, by public port
	pending  map[uint32]chan mux.Message  // expose replies awaited, by request ID
	nextID   uint32
	udp      map[int]*nodeUDPTable // UDP flows, by public port

	tasks     group // visitor pipes, the control reader, pings, retries
	closeOnce sync.Once
	cause     error // set by fail

	exchangeOnce sync.Once
	exchanged    chan *mux.Exchange // the relay's answer to our exchange
}

// runSession connects, authenticates, asks for every expose and serves
// visitors until the session ends; it returns why.
func (n *Node) runSession(ctx context.Context) error {
	c, err := n.connectAny(ctx)
	if err != nil {
		return err
	}
	defer c.stop()
	log := n.log.With("relay_name", c.welcome.Relay)
	if n.cfg.Relay == AutoRelay {
		log = log.With("relay_addr", c.addr)
	}
	s := &nodeSession{
		n: n, ym: c.ym, ctrl: c.ctrl, welcome: c.welcome, wire: c.wire, relay: c.addr, latency: c.latency,
		log:       log,
		done:      make(chan struct{}),
		mappings:  make(map[portKey]registry.Mapping),
		pending:   make(map[uint32]chan mux.Message),
		exchanged: make(chan *mux.Exchange, 1),
	}
	return s.run(ctx)
}

// run serves the session until it ends and everything it started is done.
func (s *nodeSession) run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.close(mux.CodeShutdown, "the node is shutting down") })
	defer stop()
	ended := make(chan error, 1)
	s.tasks.spawn(func() {
		ended <- s.readControl()
		s.close(mux.CodeShutdown, "") // the relay is gone: stop waiting for grants
	})
	s.tasks.spawn(s.acceptStreams)
	s.tasks.spawn(s.ping)
	s.tasks.spawn(func() {
		watchPeer(s.done, s.wire, s.n.cfg.PeerTimeout, func(silent time.Duration) {
			s.fail(mux.CodeTimeout, fmt.Errorf("the relay sent nothing for %v", silent.Round(time.Second)))
		})
	})

	err := s.releaseAll()
	switch {
	case err != nil:
	case len(s.n.cfg.Exposes) == 0:
		s.close(mux.CodeShutdown, "the node released its ports and is done")
	default:
		if err = s.exposeAll(); err == nil {
			s.ready()
			err = <-ended
		}
	}
	s.close(mux.CodeShutdown, "")
	s.tasks.closeAndWait()
	if s.cause != nil {
		return s.cause
	}
	if silent, ok := silentPeer(s.wire, s.n.cfg.PeerTimeout); ok && err != nil {
		return fmt.Errorf("the relay sent nothing for %v (%w)", silent.Round(time.Second), err)
	}
	return err
}

// exposeAll asks for every expose and waits for the answers. A refusal that
// retrying cannot fix ends the session with that error; another refusal is
// logged and asked again, with backoff, for as long as the session lasts.
func (s *nodeSession) exposeAll() error {
	for _, e := range s.n.cfg.Exposes {
		err := s.expose(e)
		var refused *mux.Error
		switch {
		case err == nil:
		case errors.As(err, &refused) && refused.Fatal():
			return &exposeError{expose: e, err: refused}
		case errors.As(err, &refused):
			s.log.Warn("relay refused for now; asking again later", "expose", e, "why", refused.Text)
			s.tasks.spawn(func() { s.retryExpose(e) })
		default:
			return err
		}
	}
	return nil
}

// retryExpose asks again for e, with backoff, until granted or the session ends.
func (s *nodeSession) retryExpose(e Expose) {
	wait := s.n.cfg.MinBackoff
	for {
		select {
		case <-s.done:
			return
		case <-time.After(jitter(wait)):
		}
		err := s.expose(e)
		if err == nil {
			s.ready()
			return
		}
		var refused *mux.Error
		if !errors.As(err, &refused) || refused.Fatal() {
			s.log.Error("giving up on an expose", "expose", e, "err", err)
			return
		}
		wait = min(2*wait, s.n.cfg.MaxBackoff)
	}
}

// expose asks the relay for one port and records the grant.
func (s *nodeSession) expose(e Expose) error {
	m, err := s.request(func(id uint32) mux.Message {
		return &mux.Expose{ID: id, Network: e.Network, Local: e.Local, WantedPort: e.RemotePort}
	})
	if err != nil {
		return err
	}
	switch m := m.(type) {
	case *mux.Error:
		s.n.cfg.Observer.Refused(m.Code)
		return m
	case *mux.Grant:
		if m.Network != e.Network || m.Port < 1 || m.Port > 65535 {
			return fmt.Errorf("the relay granted a malformed port: %s %d", m.Network, m.Port)
		}
		s.n.cfg.Observer.Granted(m.Network)
		now := time.Now()
		s.mu.Lock()
		s.mappings[portKey{m.Network, m.Port}] = registry.Mapping{
			ServerName: m.Relay, Address: m.PublicHost, Type: registry.TypeOf(m.Network), BlindPort: m.Port,
			Owner: s.n.id, NodeName: s.n.cfg.Name, Local: e.Local, Created: now, LastSeen: now,
		}
		s.mu.Unlock()
		return nil
	}
	return fmt.Errorf("%w: %v in reply to an expose", mux.ErrUnexpected, m.Type())
}

// ready records the grants in the node's own file, says what is exposed
// where, and tells OnReady.
func (s *nodeSession) ready() {
	ms := s.granted()
	if len(ms) == 0 {
		return // every expose was refused for now; the first grant says ready
	}
	s.n.sessionUp(s.welcome, ms)
	if s.n.cfg.Mappings != nil {
		if err := s.n.cfg.Mappings.Replace(ms); err != nil {
			s.log.Error("writing this node's mapping file", "err", err)
		}
	}
	s.advertise(ms)
	s.exchange()
	for _, m := range ms {
		s.log.Info("exposed", "mapping", describeMapping(m))
	}
	if s.n.cfg.OnReady != nil {
		s.n.cfg.OnReady(Connected{Relay: s.relay, RelayName: s.welcome.Relay, PublicHost: s.welcome.PublicHost, Mappings: ms, Latency: s.latency})
	}
}

// granted lists the grants in the order of the node's exposes, so "the
// first exposed service" means what the user wrote first.
func (s *nodeSession) granted() []registry.Mapping {
	s.mu.Lock()
	defer s.mu.Unlock()
	ms := make([]registry.Mapping, 0, len(s.mappings))
	for _, e := range s.n.cfg.Exposes {
		for _, m := range s.mappings {
			if m.Network() == e.Network && m.Local == e.Local && !slices.Contains(ms, m) {
				ms = append(ms, m)
				break
			}
		}
	}
	return ms
}

// describeMapping is the one-glance line: "tcp 127.0.0.1:22 -> relay.example:31022".
func describeMapping(m registry.Mapping) string {
	return fmt.Sprintf("%s %s -> %s", m.Network(), m.Local, m.PublicAddr())
}

// readControl reads control messages until the stream fails or the relay
// closes the session, and returns why.
func (s *nodeSession) readControl() error {
	for {
		m, err := s.ctrl.Recv()
		switch {
		case errors.Is(err, mux.ErrUnknownType):
			s.ctrl.Send(&mux.Error{Code: mux.CodeUnknownMessage, Text: err.Error()})
			continue
		case errors.Is(err, mux.ErrMalformed):
			s.log.Warn("ignoring a malformed message from the relay", "err", err)
			continue
		case err != nil:
			return fmt.Errorf("control stream: %s", describeEnd(err))
		}
		switch m := m.(type) {
		case *mux.Grant:
			s.deliver(m.ID, m)
		case *mux.Release:
			s.deliver(m.ID, m)
		case *mux.Error:
			if m.ID != 0 && s.deliver(m.ID, m) {
				continue
			}
			s.log.Warn("relay reported an error", "code", m.Code, "text", m.Text)
		case *mux.Ping:
			s.ctrl.Send(&mux.Pong{Seq: m.Seq})
		case *mux.Pong:
		case *mux.Reset:
			s.pipes.reset(m.Stream)
		case *mux.Exchange:
			s.receiveExchange(m)
		case *mux.Close:
			return closedByRelay(m)
		}
	}
}

// deliver hands a reply to the expose waiting for it.
func (s *nodeSession) deliver(id uint32, m mux.Message) bool {
	s.mu.Lock()
	ch := s.pending[id]
	s.mu.Unlock()
	if ch == nil {
		return false
	}
	select {
	case ch <- m:
	default: // a second answer to one request: a faulty relay; drop it
	}
	return true
}

// ping keeps the relay from judging us dead, and makes the relay's answers
// keep our own read deadline moving.
func (s *nodeSession) ping() {
	t := time.NewTicker(s.n.cfg.PeerTimeout / 3)
	defer t.Stop()
	for seq := uint64(1); ; seq++ {
		select {
		case <-s.done:
			return
		case <-t.C:
			if err := s.ctrl.Send(&mux.Ping{Seq: seq}); err != nil {
				return
			}
		}
	}
}

// acceptStreams serves each visitor stream the relay opens.
func (s *nodeSession) acceptStreams() {
	var inflight atomic.Int64
	for {
		st, err := s.ym.AcceptStream()
		if err != nil {
			return
		}
		if inflight.Load() >= maxNodeStreams {
			st.Close() // the relay sees no status and turns the visitor away
			continue
		}
		inflight.Add(1)
		if !s.tasks.spawn(func() { defer inflight.Add(-1); s.serveStream(st) }) {
			st.Close()
			return
		}
	}
}

// maxNodeStreams caps the visitor streams a node serves at once, so a relay
// cannot make a node hold without bound. Twice the relay's default
// --max-streams-per-session: the relay's own limit is the one that governs.
var maxNodeStreams int64 = 2 * 2048 // a var for tests

// serveStream reads a visitor stream's header, dials the local service and
// joins the two.
func (s *nodeSession) serveStream(st *yamux.Stream) {
	st.SetReadDeadline(time.Now().Add(s.n.cfg.HandshakeTimeout))
	hdr, err := mux.ReadStreamHeader(st)
	st.SetReadDeadline(time.Time{})
	if err != nil {
		s.log.Debug("bad visitor stream", "err", err)
		st.Close()
		return
	}
	if hdr.Kind == mux.KindUDP {
		s.serveUDP(st, int(hdr.Port))
		return
	}
	s.mu.Lock()
	m, ok := s.mappings[portKey{"tcp", int(hdr.Port)}]
	s.mu.Unlock()
	if !ok || hdr.Kind != mux.KindTCP {
		st.Write([]byte{byte(mux.StatusUnknownMapping)})
		st.Close()
		return
	}
	c, err := localDialer.Dial("tcp", m.Local)
	if err != nil {
		s.log.Debug("local service refused a visitor", "local", m.Local, "visitor", hdr.Visitor, "err", err)
		st.Write([]byte{byte(mux.StatusRefused)})
		st.Close()
		return
	}
	conn := c.(*net.TCPConn)
	id := st.StreamID()
	p := newPipe(conn, st, func() { s.ctrl.Send(&mux.Reset{Stream: id}) })
	traffic := s.n.traffic.of(portKey{"tcp", int(hdr.Port)})
	traffic.countAtNode(p)
	if _, err := st.Write([]byte{byte(mux.StatusOK)}); err != nil || !s.pipes.add(id, p) {
		conn.Close()
		st.Close()
		return
	}
	defer s.pipes.remove(id)
	traffic.ConnOpened()
	defer traffic.ConnClosed()
	p.run()
}

// closedByRelay is the error a node's session ends with when the relay
// closes it: a *mux.Error when the code says retrying cannot help.
func closedByRelay(m *mux.Close) error {
	if m.Code.Fatal() {
		return &mux.Error{Code: m.Code, Text: "the relay closed the session: " + m.Reason}
	}
	return fmt.Errorf("the relay closed the session: %s", m.Reason)
}

// close ends the session, telling the relay why when there is a reason.
// Only the first close or fail counts.
func (s *nodeSession) close(code mux.ErrorCode, reason string) {
	s.closeOnce.Do(func() { s.shut(code, reason) })
}

// fail ends the session because of err, which run then returns: why the
// session was closed says more than what closing did to the reader.
func (s *nodeSession) fail(code mux.ErrorCode, err error) {
	s.closeOnce.Do(func() {
		s.cause = err
		s.shut(code, err.Error())
	})
}

func (s *nodeSession) shut(code mux.ErrorCode, reason string) {
	close(s.done)
	var bye *mux.Close
	if reason != "" {
		bye = &mux.Close{Code: code, Reason: reason}
	}
	endSession(s.ctrl, s.ym, &s.pipes, bye)
}

// endSession ends a session at either end: it sends bye, if any, waiting
// for it at most a second, closes the yamux session and aborts every pipe.
// The session goes first: a pipe's stream can be stuck behind yamux's
// reader, which holds a stream lock while it waits for the rest of a frame;
// closing the connection frees it, so aborting cannot hang.
func endSession(ctrl *mux.Conn, ym *yamux.Session, ps *pipes, bye *mux.Close) {
	wait := func() {}
	if bye != nil {
		wait = sendBounded(ctrl, bye)
	}
	ym.Close()
	ps.closeAll()
	wait()
}

// sendBounded sends m, waiting at most a second: a dying connection must not
// hold up a shutdown. The returned wait blocks until the send has returned,
// which it does at once when the session is closed.
func sendBounded(ctrl *mux.Conn, m mux.Message) (wait func()) {
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		ctrl.Send(m)
	}()
	select {
	case <-sent:
	case <-time.After(time.Second):
	}
	return func() { <-sent }
}
