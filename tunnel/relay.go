package tunnel

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

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
	// Lease is how long a mapping stays reserved for its node after the
	// node goes away. Zero: 24 h.
	Lease time.Duration
	// HandshakeTimeout bounds a node's handshake. Zero: 10 s.
	HandshakeTimeout time.Duration
	// PeerTimeout is how long a node may stay silent before it is judged
	// dead (nodes ping every third of it). Zero: 30 s.
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
	// Logger receives one line per meaningful event. Nil discards.
	Logger *slog.Logger

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
	}
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
	return nil
}

// Relay accepts node sessions, grants them public ports and carries each
// visitor of a granted port to its node.
type Relay struct {
	cfg     RelayConfig
	log     *slog.Logger
	alloc   *portalloc.Allocator
	maps    *registry.Mappings
	started time.Time

	mu       sync.Mutex
	sessions map[string]*relaySession // live sessions by node ID
	ports    map[portKey]*publicPort  // bound public ports

	wg sync.WaitGroup // sessions, port loops, the janitor
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
		alloc:    &portalloc.Allocator{Range: cfg.Ports, BindHost: cfg.BindHost, Owners: cfg.Mappings},
		maps:     cfg.Mappings,
		sessions: make(map[string]*relaySession),
		ports:    make(map[portKey]*publicPort),
	}, nil
}

// Serve accepts nodes on ln until ctx is cancelled or ln fails. It blocks;
// it closes ln, every session and every public port before it returns, and
// waits for all of their goroutines. Cancellation is a clean end (nil).
func (r *Relay) Serve(ctx context.Context, ln net.Listener) error {
	r.started = time.Now()
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

// serveConn authenticates one node connection and runs its session.
func (r *Relay) serveConn(ctx context.Context, c net.Conn) {
	remote := c.RemoteAddr().String()
	tuneTCP(c)
	ym, err := mux.Server(c, r.cfg.Session)
	if err != nil {
		c.Close()
		r.log.Error("starting session", "remote", remote, "err", err)
		return
	}
	stop := context.AfterFunc(ctx, func() { ym.Close() }) // a shutdown cuts a handshake short
	defer stop()
	hctx, cancel := context.WithTimeout(ctx, r.cfg.HandshakeTimeout)
	st, err := ym.AcceptStreamWithContext(hctx)
	cancel()
	if err != nil {
		ym.Close()
		r.log.Info("node connection closed before its handshake", "remote", remote, "err", err)
		return
	}
	ctrl := mux.NewConn(st, 0)
	peer, err := ctrl.RelayHandshake(mux.RelayAuth{
		Name: r.cfg.Name, PublicHost: r.cfg.PublicHost, Token: r.cfg.Token,
	}, r.cfg.HandshakeTimeout)
	if err != nil {
		ym.Close()
		level := slog.LevelInfo
		if errors.Is(err, mux.ErrAuthFailed) {
			level = slog.LevelWarn
		}
		r.log.Log(ctx, level, "node handshake failed", "remote", remote, "err", err)
		return
	}
	s := newRelaySession(r, peer, remote, ym, ctrl)
	r.register(s)
	s.log.Info("node connected")
	reason := s.run(ctx)
	r.unregister(s)
	s.log.Info("node disconnected", "reason", reason)
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
