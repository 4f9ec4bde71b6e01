package tunnel

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/p2prc/p2prc/iptable"
	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/portalloc"
	"github.com/p2prc/p2prc/registry"
)

// RelayConfig configures a Relay. Zero values mean the defaults given on each
// field; fields marked required have none.
type RelayConfig struct {
	// Name is this relay's name in grants and mapping files. Required.
	Name string
	// PublicHost is the host visitors use to reach granted ports. Required.
	PublicHost string
	// Token is the secret nodes must prove they hold. Required.
	Token []byte
	// Ports is the range public ports are granted from. Required.
	Ports portalloc.Range
	// BindHost is where public ports listen. Zero: all interfaces.
	BindHost string
	// Mappings is the mapping table, the authority on which ports are
	// taken. Required.
	Mappings *registry.Mappings
	// Relays is the relay registry: the relay lists itself in it, merges
	// the relays nodes tell it of, and tells nodes what it holds. Nil: none.
	Relays *registry.Servers
	// IPTable is P2PRC's IP table: the relay keeps its own entry there
	// (ProxyServer), merges nodes' tables and tells nodes what it holds.
	// Nil: none.
	IPTable *iptable.File
	// ControlAddr is the address nodes dial, as the relay advertises
	// itself. Zero: PublicHost with the port Serve's listener is on.
	ControlAddr string
	// Lease is how long a mapping stays reserved for its node after the
	// node goes away. Zero: 24 h.
	Lease time.Duration
	// HandshakeTimeout bounds a node's handshake. Zero: 10 s.
	HandshakeTimeout time.Duration
	// PeerTimeout is how long a node may send nothing at all before it is
	// judged dead (nodes ping every third of it), and how long the kernel
	// waits for the node to acknowledge data (TCP_USER_TIMEOUT). Zero: 30 s.
	PeerTimeout time.Duration
	// UDPIdle is how long a UDP flow may stay quiet before it expires.
	// Zero: 60 s.
	UDPIdle time.Duration
	// UDPMaxFlows caps the flows (visitor addresses) of one UDP mapping. At
	// the cap a new visitor replaces the oldest flow quiet for a second (or
	// half of UDPIdle, if shorter); with none, its datagram is dropped and
	// counted. Zero: 1024.
	UDPMaxFlows int
	// Session configures yamux.
	Session mux.SessionConfig
	// TLS secures the control connections (see mux.ServerTLS). Nil:
	// plaintext, as with --insecure-plaintext; a node that starts TLS is
	// told so and refused, and Serve logs a warning.
	TLS *tls.Config
	// Limits bound what peers can make the relay hold. Zero fields mean
	// the defaults of DefaultLimits.
	Limits Limits
	// Logger receives one line per meaningful event. Nil discards.
	Logger *slog.Logger
	// Observer hears of events, for metrics. Nil: nobody does.
	Observer Observer

	// udpStreamPerFlow carries each UDP flow on a stream of its own instead
	// of one stream per mapping: the framing measured against the default
	// by BenchmarkUDP, kept so the comparison can be run again.
	udpStreamPerFlow bool
}

// Defaults shared by relay and node.
const (
	defaultLease            = 24 * time.Hour
	defaultPeerTimeout      = 30 * time.Second
	defaultHandshakeTimeout = mux.DefaultHandshakeTimeout
)

func (c *RelayConfig) validate() error {
	switch {
	case c.Name == "":
		return errors.New("relay: a name is required")
	case c.PublicHost == "":
		return errors.New("relay: a public host is required (--public-host)")
	case len(c.Token) == 0:
		return errors.New("relay: a token is required")
	case c.Ports.Size() == 0:
		return errors.New("relay: a port range is required (--ports)")
	case c.Mappings == nil:
		return errors.New("relay: a mapping table is required")
	case strings.ContainsAny(c.PublicHost, ":[]") && net.ParseIP(c.PublicHost) == nil:
		return fmt.Errorf("relay: public host %q: give a host name or an address without a port (--public-host)", c.PublicHost)
	case c.Lease < 0 || c.HandshakeTimeout < 0 || c.PeerTimeout < 0:
		return errors.New("relay: --lease, --handshake-timeout and --peer-timeout must not be negative (0 means the default)")
	}
	if err := c.Limits.validate(); err != nil {
		return err
	}
	c.Limits = c.Limits.withDefaults()
	c.Lease = cmp.Or(c.Lease, defaultLease)
	c.HandshakeTimeout = cmp.Or(c.HandshakeTimeout, defaultHandshakeTimeout)
	c.PeerTimeout = cmp.Or(c.PeerTimeout, defaultPeerTimeout)
	c.UDPIdle = cmp.Or(c.UDPIdle, defaultUDPIdle)
	c.UDPMaxFlows = cmp.Or(c.UDPMaxFlows, defaultUDPMaxFlows)
	if c.UDPIdle < 0 || c.UDPMaxFlows < 0 {
		return errors.New("relay: the UDP idle timeout and flow cap must not be negative")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	return nil
}

// Relay accepts node sessions, grants them public ports and carries each
// visitor of a granted port to its node.
type Relay struct {
	cfg     RelayConfig
	log     *slog.Logger
	alloc   *portalloc.Allocator
	maps    *registry.Mappings
	started time.Time // guarded by mu
	traffic trafficTable

	controlAddr string // what the relay advertises; set by Serve

	mu           sync.Mutex
	sessions     map[string]*relaySession // live sessions by node ID
	ports        map[portKey]*publicPort  // bound public ports
	shuttingDown bool                     // set when Serve is ending: no port is opened any more

	wg sync.WaitGroup // sessions, port loops, the janitor

	admission *admission // connections and failed authentications by source
	refusals  refusals   // refusals by limit, for the log and Refusals
}

type portKey struct {
	network string
	port    int
}

func (k portKey) String() string { return fmt.Sprintf("%d/%s", k.port, k.network) }

// NewRelay checks cfg and returns a relay ready to Serve.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Relay{
		cfg:      cfg,
		log:      cfg.Logger,
		alloc:    &portalloc.Allocator{Range: cfg.Ports, BindHost: cfg.BindHost, Owners: cfg.Mappings, ListenConfig: visitorListenConfig},
		maps:     cfg.Mappings,
		sessions: make(map[string]*relaySession),
		ports:    make(map[portKey]*publicPort),

		admission: &admission{limits: cfg.Limits},
	}, nil
}

// Serve accepts nodes on ln until ctx is cancelled or ln fails. It blocks;
// it closes ln, every session and every public port before it returns, and
// waits for all of their goroutines. Cancellation is a clean end (nil).
func (r *Relay) Serve(ctx context.Context, ln net.Listener) error {
	r.mu.Lock()
	r.started = time.Now()
	r.mu.Unlock()
	r.advertise(ln.Addr())
	if r.cfg.TLS == nil {
		r.log.Warn("control connections are not encrypted (--insecure-plaintext): anyone on the path can read and change what relay and nodes say")
	}
	r.restorePorts()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.wg.Add(1)
	go r.janitor(ctx)
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	err := r.acceptNodes(ctx, ln)
	cancel()
	ln.Close()
	r.closePorts()
	r.wg.Wait()
	if ctx.Err() != nil && errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// acceptNodes runs one session per accepted connection until ln fails.
func (r *Relay) acceptNodes(ctx context.Context, ln net.Listener) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return net.ErrClosed
			}
			// Out of file descriptors and the like: wait, don't spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			r.log.Warn("accepting node connections failed; retrying", "err", err, "in", delay)
			select {
			case <-time.After(delay):
				continue
			case <-ctx.Done():
				return net.ErrClosed
			}
		}
		delay = 0
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.serveConn(ctx, c)
		}()
	}
}

// serveConn admits, secures and authenticates one node connection, then
// runs its session. Everything before the session — TLS, yamux, the control
// handshake — shares one deadline, HandshakeTimeout.
func (r *Relay) serveConn(ctx context.Context, c net.Conn) {
	remote := c.RemoteAddr().String()
	key := sourceKey(c.RemoteAddr())
	t := r.admission.admit(key, time.Now())
	defer func() { t.done(time.Now()) }()
	if t.verdict == drop {
		c.Close()
		r.refusals.note(r.log, t.limit, t.max, "remote", remote)
		return
	}
	tuneTCP(c, r.cfg.PeerTimeout)
	began := time.Now()
	deadline := began.Add(r.cfg.HandshakeTimeout)
	c.SetDeadline(deadline)
	hctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	stopRaw := context.AfterFunc(ctx, func() { c.Close() }) // a shutdown cuts the first byte's wait short
	conn, refusal, err := r.secure(hctx, c)
	if err != nil {
		stopRaw()
		c.Close()
		r.logEarlyEnd(ctx, remote, err)
		return
	}
	wire := mux.NewWire(conn)
	ym, err := mux.Server(wire, r.cfg.Session)
	stopRaw()
	if err != nil {
		conn.Close()
		r.log.Error("starting session", "remote", remote, "err", err)
		return
	}
	stop := context.AfterFunc(ctx, func() { ym.Close() }) // a shutdown cuts a handshake short
	defer stop()
	st, err := ym.AcceptStreamWithContext(hctx)
	if err != nil {
		ym.Close()
		r.logEarlyEnd(ctx, remote, err)
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.refuseMoreStreams(ym, remote)
	}()
	if refusal == nil {
		refusal = t.refusal
	}
	if refusal != nil {
		r.refuseConn(mux.NewConn(st, mux.HandshakeMaxFrame), refusal, deadline)
		ym.Close()
		if t.limit != "" {
			r.refusals.note(r.log, t.limit, t.max, "remote", remote)
		} else {
			r.log.Info("refused a node that does not use TLS; it was told to drop --insecure-plaintext", "remote", remote)
		}
		return
	}
	ctrl := mux.NewConn(st, r.cfg.Limits.MaxFrameSize)
	peer, err := ctrl.RelayHandshake(mux.RelayAuth{
		Name: r.cfg.Name, PublicHost: r.cfg.PublicHost, Token: r.cfg.Token,
		Binding: mux.ChannelBinding(conn),
	}, time.Until(deadline))
	if err != nil {
		ym.Close()
		if errors.Is(err, mux.ErrAuthFailed) {
			r.admission.authFailed(key, time.Now())
			r.cfg.Observer.AuthFailed()
		}
		r.logEarlyEnd(ctx, remote, err)
		return
	}
	c.SetDeadline(time.Time{})
	t.authenticated()
	s := newRelaySession(r, peer, remote, ym, ctrl, wire)
	if peer.Query {
		s.log.Info("query session (a probe or a listing)") // it replaces nothing
	} else {
		r.cfg.Observer.Handshake(time.Since(began))
		r.cfg.Observer.SessionOpened()
		r.register(s)
		s.log.Info("node connected")
	}
	reason := s.run(ctx)
	r.unregister(s)
	s.log.Info("node disconnected", "reason", reason)
}

// refuseConn tells a node why it is refused, on its control stream, before
// its handshake: it reads the node's hello (so that closing does not reset
// the connection under the answer) and sends refusal.
func (r *Relay) refuseConn(ctrl *mux.Conn, refusal *mux.Error, deadline time.Time) {
	ctrl.SetDeadline(deadline)
	if _, err := ctrl.Recv(); err != nil && !errors.Is(err, mux.ErrUnknownType) && !errors.Is(err, mux.ErrMalformed) {
		return
	}
	ctrl.Send(refusal)
}

// logEarlyEnd logs a connection that ended before its session began: a
// failed authentication is a warning, a slow handshake a counted refusal,
// anything else (a port scanner, a node that gave up) an info line.
func (r *Relay) logEarlyEnd(ctx context.Context, remote string, err error) {
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		r.log.Info("node connection closed before its handshake: the relay is shutting down", "remote", remote)
	case errors.Is(err, mux.ErrAuthFailed):
		r.log.Warn("node handshake failed", "remote", remote, "err", err)
	case strings.Contains(err.Error(), "remote error: tls: bad certificate"):
		r.log.Warn("a node refused this relay's certificate: it pins another fingerprint (a self-signed certificate is kept in relay.pem in the state dir: keep that file)", "remote", remote)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, yamux.ErrTimeout), errors.As(err, &ne) && ne.Timeout():
		r.refusals.note(r.log, limitHandshakeTimeout, int(r.cfg.HandshakeTimeout/time.Second), "remote", remote, "err", err)
	case errors.Is(err, errNotANode), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		// Port scanners and stray connections: one line each would let
		// anyone fill the log.
		r.log.Debug("connection ended before its handshake", "remote", remote, "err", err)
	default:
		r.log.Info("node handshake failed", "remote", remote, "err", err)
	}
}

// refuseMoreStreams ends the session if the node opens a second stream. A
// node opens one, the control stream; each further one would buffer up to a
// stream window before anyone reads it — a way to exhaust the relay's
// memory, before authentication or after — so it is refused with the whole
// connection. It returns when the session ends.
func (r *Relay) refuseMoreStreams(ym *yamux.Session, remote string) {
	st, err := ym.AcceptStream()
	if err != nil {
		return
	}
	st.Close()
	ym.Close()
	r.refusals.note(r.log, limitOneStream, 1, "remote", remote)
}

// register makes s the session of its node, replacing (and closing) a
// previous one at once: a node never fights its own ghost.
func (r *Relay) register(s *relaySession) {
	r.mu.Lock()
	old := r.sessions[s.peer.ID]
	r.sessions[s.peer.ID] = s
	r.mu.Unlock()
	if old != nil {
		old.close(mux.CodeReplaced, "replaced by a newer session of the same node")
	}
}

// unregister forgets s and starts the lease clock of the ports it held.
func (r *Relay) unregister(s *relaySession) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions[s.peer.ID] == s {
		delete(r.sessions, s.peer.ID)
	}
	detached := false
	for _, pp := range s.ports {
		detached = pp.session.CompareAndSwap(s, nil) || detached
	}
	if detached {
		if err := r.maps.Touch(s.peer.ID, time.Now()); err != nil {
			r.log.Error("recording when the node was last seen", "node", s.peer.Name, "err", err)
		}
	}
}

// Sessions returns the number of connected nodes.
func (r *Relay) Sessions() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}
