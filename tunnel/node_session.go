package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/registry"
)

// dialLocalTimeout bounds the node's dial of its local service for a visitor.
const dialLocalTimeout = 5 * time.Second

// nodeSession is one connection of a node to its relay.
type nodeSession struct {
	n       *Node
	ym      *yamux.Session
	ctrl    *mux.Conn
	wire    *mux.Wire
	welcome *mux.Welcome
	log     *slog.Logger
	pipes   pipes
	done    chan struct{} // closed when the session is closing

	mu       sync.Mutex
	mappings map[portKey]registry.Mapping // granted, by public port
	pending  map[uint32]chan mux.Message  // expose replies awaited, by request ID
	nextID   uint32

	tasks     group // visitor pipes, the control reader, pings, retries
	closeOnce sync.Once
	cause     error // the reason given to the first close, if any
}

// runSession connects, authenticates, asks for every expose and serves
// visitors until the session ends; it returns why.
func (n *Node) runSession(ctx context.Context) error {
	d := net.Dialer{Timeout: n.cfg.DialTimeout}
	conn, err := d.DialContext(ctx, "tcp", n.cfg.Relay)
	if err != nil {
		return err
	}
	tuneTCP(conn, n.cfg.PeerTimeout)
	wire := mux.NewWire(conn)
	ym, err := mux.Client(wire, n.cfg.Session)
	if err != nil {
		conn.Close()
		return err
	}
	stop := context.AfterFunc(ctx, func() { ym.Close() })
	defer stop()
	st, err := ym.OpenStream()
	if err != nil {
		ym.Close()
		return err
	}
	ctrl := mux.NewConn(st, 0)
	w, err := ctrl.NodeHandshake(mux.NodeAuth{Name: n.cfg.Name, Key: n.cfg.Key, Token: n.cfg.Token}, n.cfg.HandshakeTimeout)
	if err != nil {
		ym.Close()
		return err
	}
	s := &nodeSession{
		n: n, ym: ym, ctrl: ctrl, welcome: w, wire: wire,
		log:      n.log.With("relay_name", w.Relay),
		done:     make(chan struct{}),
		mappings: make(map[portKey]registry.Mapping),
		pending:  make(map[uint32]chan mux.Message),
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
			s.close(mux.CodeTimeout, fmt.Sprintf("the relay sent nothing for %v", silent.Round(time.Second)))
		})
	})

	err := s.exposeAll()
	if err == nil {
		s.n.sessionsUp.Add(1)
		s.ready()
		err = <-ended
	}
	s.close(mux.CodeShutdown, "")
	s.tasks.closeAndWait()
	if s.cause != nil {
		return s.cause // why we closed says more than what closing did to the reader
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
	reply := make(chan mux.Message, 1)
	s.mu.Lock()
	s.nextID++
	id := s.nextID
	s.pending[id] = reply
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
	}()
	if err := s.ctrl.Send(&mux.Expose{ID: id, Network: e.Network, Local: e.Local, WantedPort: e.RemotePort}); err != nil {
		return err
	}
	var m mux.Message
	select {
	case m = <-reply:
	case <-s.done:
		return errors.New("session ended while waiting for a grant")
	case <-time.After(s.n.cfg.PeerTimeout):
		return errors.New("the relay did not answer an expose request in time")
	}
	switch m := m.(type) {
	case *mux.Error:
		return m
	case *mux.Grant:
		if m.Network != e.Network || m.Port < 1 || m.Port > 65535 {
			return fmt.Errorf("the relay granted a malformed port: %s %d", m.Network, m.Port)
		}
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
	s.mu.Lock()
	ms := make([]registry.Mapping, 0, len(s.mappings))
	for _, m := range s.mappings {
		ms = append(ms, m)
	}
	s.mu.Unlock()
	if s.n.cfg.Mappings != nil {
		if err := s.n.cfg.Mappings.Replace(ms); err != nil {
			s.log.Error("writing this node's mapping file", "err", err)
		}
	}
	for _, m := range ms {
		s.log.Info("exposed", "mapping", describeMapping(m))
	}
	if s.n.cfg.OnReady != nil {
		s.n.cfg.OnReady(Connected{Relay: s.n.cfg.Relay, RelayName: s.welcome.Relay, PublicHost: s.welcome.PublicHost, Mappings: ms})
	}
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
		case *mux.Close:
			if m.Code.Fatal() {
				return &mux.Error{Code: m.Code, Text: "the relay closed the session: " + m.Reason}
			}
			return fmt.Errorf("the relay closed the session: %s", m.Reason)
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
	ch <- m
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
	for {
		st, err := s.ym.AcceptStream()
		if err != nil {
			return
		}
		if !s.tasks.spawn(func() { s.serveStream(st) }) {
			st.Close()
			return
		}
	}
}

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
	s.mu.Lock()
	m, ok := s.mappings[portKey{"tcp", int(hdr.Port)}]
	s.mu.Unlock()
	if !ok || hdr.Kind != mux.KindTCP {
		st.Write([]byte{byte(mux.StatusUnknownMapping)})
		st.Close()
		return
	}
	c, err := net.DialTimeout("tcp", m.Local, dialLocalTimeout)
	if err != nil {
		s.log.Debug("local service refused a visitor", "local", m.Local, "visitor", hdr.Visitor, "err", err)
		st.Write([]byte{byte(mux.StatusRefused)})
		st.Close()
		return
	}
	conn := c.(*net.TCPConn)
	id := st.StreamID()
	p := newPipe(conn, st, func() { s.ctrl.Send(&mux.Reset{Stream: id}) })
	if _, err := st.Write([]byte{byte(mux.StatusOK)}); err != nil || !s.pipes.add(id, p) {
		conn.Close()
		st.Close()
		return
	}
	defer s.pipes.remove(id)
	p.run()
}

// close ends the session, telling the relay why when there is a reason;
// the reason is then what run returns.
func (s *nodeSession) close(code mux.ErrorCode, reason string) {
	s.closeOnce.Do(func() {
		close(s.done)
		wait := func() {}
		if reason != "" {
			s.cause = errors.New(reason)
			wait = sendBounded(s.ctrl, &mux.Close{Code: code, Reason: reason})
		}
		// The session first: a pipe's stream can be stuck behind yamux's
		// reader, which holds a stream lock while it waits for the rest of a
		// frame; closing the connection frees it, so aborting cannot hang.
		s.ym.Close()
		s.pipes.closeAll()
		wait()
	})
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
