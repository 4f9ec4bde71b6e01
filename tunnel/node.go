package tunnel

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"time"

	"github.com/p2prc/p2prc/iptable"
	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/registry"
)

// NodeConfig configures a Node. Zero values mean the defaults given on each
// field; fields marked required have none.
type NodeConfig struct {
	// Relay is the relay's control address, host:port, or AutoRelay.
	// Required.
	Relay string
	// Exposes are the local services to offer. At least one is required.
	Exposes []Expose
	// Name is shown in the relay's logs and listings. Zero: the relay
	// names the node after its identity.
	Name string
	// Token is the secret shared with the relay. Required.
	Token []byte
	// Key is the node's identity; mappings belong to it. Required.
	Key ed25519.PrivateKey
	// Mappings receives the node's own copy of its mappings whenever its
	// grants arrive. Nil: no copy is kept.
	Mappings *registry.Mappings
	// Relays is the relay registry: each relay the node connects to is
	// recorded with its measured latency, relays learnt from the relay are
	// merged in, and AutoRelay chooses from it. Nil: none is kept, and
	// AutoRelay cannot be used.
	Relays *registry.Servers
	// IPTable is P2PRC's IP table, where the node keeps its own entry
	// current and merges the relay's table. Nil: none is kept.
	IPTable *iptable.File
	// Once makes Run return after the first session ends instead of
	// reconnecting.
	Once bool
	// Release lists public ports whose mappings the node gives up on
	// connecting, before it exposes anything. With no Exposes, Run returns
	// once they are released.
	Release []PublicPort
	// DialTimeout bounds connecting to the relay. Zero: 10 s.
	DialTimeout time.Duration
	// HandshakeTimeout bounds the handshake. Zero: 10 s.
	HandshakeTimeout time.Duration
	// PeerTimeout is how long the relay may stay silent before the node
	// judges it dead and reconnects; the node pings every third of it.
	// Zero: 30 s.
	PeerTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnects, which
	// doubles from MinBackoff up to MaxBackoff, with jitter. Zero: 1 s and
	// 30 s.
	MinBackoff, MaxBackoff time.Duration
	// UDPIdle is how long a UDP flow may stay quiet before the node ends it
	// (and tells the relay). Zero: 60 s.
	UDPIdle time.Duration
	// UDPMaxFlows caps the flows of one UDP mapping at the node, whatever
	// the relay asks; the policy at the cap is the relay's (RelayConfig).
	// Zero: 1024.
	UDPMaxFlows int
	// Session configures yamux.
	Session mux.SessionConfig
	// TLS secures the control connection and says which relay
	// certificates to trust. Nil: plaintext, as with --insecure-plaintext;
	// Run logs a warning.
	TLS *NodeTLS
	// Logger receives one line per state change. Nil discards.
	Logger *slog.Logger
	// OnReady, if set, is called each time the node is connected and has
	// its grants.
	OnReady func(Connected)
	// Observer hears of events, for metrics. Nil: nobody does.
	Observer Observer
}

// Connected describes a node session once its grants are in.
type Connected struct {
	Relay      string             // the relay's control address
	RelayName  string             // the relay's name
	PublicHost string             // the host visitors use
	Mappings   []registry.Mapping // what was granted
	Latency    time.Duration      // the relay's latency, measured on connecting
}

const (
	defaultDialTimeout = 10 * time.Second
	defaultMinBackoff  = time.Second
	defaultMaxBackoff  = 30 * time.Second
)

func (c *NodeConfig) validate() error {
	switch {
	case c.Relay == "":
		return errors.New("node: a relay address is required (--relay HOST:PORT)")
	case len(c.Exposes) == 0 && len(c.Release) == 0:
		return errors.New("node: nothing to expose; add --expose tcp:PORT")
	case len(c.Token) == 0:
		return errors.New("node: a token is required (--token-file or P2PRC_TOKEN)")
	case len(c.Key) != ed25519.PrivateKeySize:
		return errors.New("node: an identity key is required")
	case c.DialTimeout < 0 || c.HandshakeTimeout < 0 || c.PeerTimeout < 0 || c.MinBackoff < 0 || c.MaxBackoff < 0:
		return errors.New("node: timeouts and backoffs (--peer-timeout, --max-backoff) must not be negative (0 means the default)")
	}
	if err := CheckRelayAddr(c.Relay); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if err := c.checkAuto(); err != nil {
		return err
	}
	if c.UDPIdle < 0 || c.UDPMaxFlows < 0 {
		return errors.New("node: the UDP idle timeout and flow cap must not be negative")
	}
	c.setDefaults()
	return nil
}

// setDefaults fills in the zero values that have defaults.
func (c *NodeConfig) setDefaults() {
	c.DialTimeout = cmp.Or(c.DialTimeout, defaultDialTimeout)
	c.HandshakeTimeout = cmp.Or(c.HandshakeTimeout, defaultHandshakeTimeout)
	c.PeerTimeout = cmp.Or(c.PeerTimeout, defaultPeerTimeout)
	c.MinBackoff = cmp.Or(c.MinBackoff, defaultMinBackoff)
	c.MaxBackoff = max(cmp.Or(c.MaxBackoff, defaultMaxBackoff), c.MinBackoff)
	c.UDPIdle = cmp.Or(c.UDPIdle, defaultUDPIdle)
	c.UDPMaxFlows = cmp.Or(c.UDPMaxFlows, defaultUDPMaxFlows)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
}

// CheckRelayAddr checks a --relay value: HOST:PORT, or AutoRelay.
func CheckRelayAddr(addr string) error {
	if addr == AutoRelay {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("--relay %q: give the relay's address as HOST:PORT (its control port, 8700 by default), or auto", addr)
	}
	return nil
}

// Node keeps a session with a relay and carries the relay's visitors to
// local services.
type Node struct {
	cfg NodeConfig
	log *slog.Logger
	id  string

	state   nodeState // what Status reports
	traffic trafficTable
	own     ownEntry // this node's entry in its IP table
}

// NewNode checks cfg and returns a node ready to Run.
func NewNode(cfg NodeConfig) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	id := mux.NodeID(cfg.Key.Public().(ed25519.PublicKey))
	n := &Node{cfg: cfg, log: cfg.Logger.With("relay", cfg.Relay), id: id}
	n.state.started = time.Now()
	n.own.last = n.previousEntry()
	return n, nil
}

// ID is the node's identity, as the relay records it.
func (n *Node) ID() string { return n.id }

// Run connects to the relay and serves visitors until ctx is cancelled
// (returning nil) or the relay refuses the node for a reason retrying cannot
// fix (returning that). Network failures are retried with backoff, unless
// the configuration says Once.
func (n *Node) Run(ctx context.Context) error {
	if n.cfg.TLS == nil {
		n.log.Warn("the connection to the relay is not encrypted (--insecure-plaintext): anyone on the path can read and change what node and relay say")
	}
	backoff := n.cfg.MinBackoff
	lastErr := ""
	for {
		start := time.Now()
		err := n.runSession(ctx)
		wasUp := n.state.down()
		if ctx.Err() != nil {
			return nil
		}
		if isFatal(err) || n.cfg.Once || len(n.cfg.Exposes) == 0 {
			return err
		}
		if time.Since(start) > n.cfg.MaxBackoff {
			backoff = n.cfg.MinBackoff // it was up a good while: retry fast
		}
		wait := jitter(backoff)
		// Each change of state is said once: losing the relay, then a new
		// reason it cannot be reached. Retries that fail the same way are
		// debug lines.
		n.cfg.Observer.Reconnecting()
		switch msg := err.Error(); {
		case wasUp:
			n.log.Warn("lost the relay; reconnecting", "err", err, "next_in", wait.Round(time.Millisecond))
			lastErr = ""
		case msg != lastErr:
			n.log.Warn("relay unreachable; retrying with backoff", "err", err, "next_in", wait.Round(time.Millisecond))
			lastErr = msg
		default:
			n.log.Debug("still reconnecting", "err", err, "next_in", wait.Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(2*backoff, n.cfg.MaxBackoff)
	}
}

// jitter spreads reconnects of many nodes: a wait between 80 % and 120 % of d.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// isFatal reports whether err means retrying cannot help.
func isFatal(err error) bool {
	var refused *mux.Error
	if errors.As(err, &refused) {
		return refused.Fatal()
	}
	return errors.Is(err, mux.ErrRelayProof) || errors.Is(err, mux.ErrVersion) ||
		errors.Is(err, mux.ErrFingerprintMismatch) || errors.Is(err, mux.ErrUntrustedCert) ||
		errors.Is(err, errRelayPlaintext)
}

// fatalExpose names the expose a fatal refusal was for.
type exposeError struct {
	expose Expose
	err    *mux.Error
}

func (e *exposeError) Error() string { return fmt.Sprintf("--expose %s: %s", e.expose, e.err.Text) }
func (e *exposeError) Unwrap() error { return e.err }
