package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/registry"
)

// AutoRelay, given as NodeConfig.Relay (--relay auto), makes the node choose
// its relay from NodeConfig.Relays: the one with the lowest measured latency
// that it can connect to.
const AutoRelay = "auto"

// relayConn is an authenticated connection to a relay, before a session
// runs on it.
type relayConn struct {
	addr    string // the control address dialled
	wire    *mux.Wire
	ym      *yamux.Session
	ctrl    *mux.Conn
	welcome *mux.Welcome
	latency time.Duration // measured after the handshake; 0 for query sessions
	stop    func() bool   // detaches ym from the context's cancellation
}

// close ends the connection.
func (c *relayConn) close() {
	c.stop()
	c.ym.Close()
}

// connect dials addr, starts yamux and runs the handshake. A query
// connection (a probe or a listing) never replaces the node's live session
// on the relay. Cancelling ctx closes the connection, also after connect
// returns, until close or stop.
func (n *Node) connect(ctx context.Context, addr string, query bool) (*relayConn, error) {
	conn, err := n.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	wire := mux.NewWire(conn.Conn)
	ym, err := mux.Client(wire, n.cfg.Session)
	if err != nil {
		conn.Close()
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { ym.Close() })
	st, err := ym.OpenStream()
	if err != nil {
		stop()
		ym.Close()
		return nil, err
	}
	ctrl := mux.NewConn(st, 0)
	began := time.Now()
	w, err := ctrl.NodeHandshake(mux.NodeAuth{
		Name: n.cfg.Name, Key: n.cfg.Key, Token: n.cfg.Token, Query: query,
		Binding: mux.ChannelBinding(conn.Conn),
	}, n.cfg.HandshakeTimeout)
	if err != nil {
		stop()
		ym.Close()
		n.observeHandshakeFailure(err)
		return nil, err
	}
	if !query {
		n.cfg.Observer.Handshake(time.Since(began))
		n.cfg.Observer.SessionOpened()
	}
	if n.cfg.TLS != nil {
		conn.trusted(n.cfg.TLS.Pins, n.log) // the relay proved it holds the token
	}
	return &relayConn{addr: addr, wire: wire, ym: ym, ctrl: ctrl, welcome: w, stop: stop}, nil
}

// connectSession connects to addr for a session: it authenticates, then
// measures the relay's latency and records it in the relay registry, so the
// registry is current before the node reports itself ready.
//
// A node that only releases ports (no exposes) connects as a query session,
// so that it does not replace the node's running session, if any.
func (n *Node) connectSession(ctx context.Context, addr string) (*relayConn, error) {
	c, err := n.connect(ctx, addr, len(n.cfg.Exposes) == 0)
	if err != nil {
		return nil, err
	}
	rtt, err := measureLatency(c.ctrl, latencyPings, n.cfg.HandshakeTimeout)
	if err != nil {
		c.close()
		return nil, err
	}
	c.latency = rtt
	n.recordRelay(addr, c.welcome.Relay, rtt)
	if n.cfg.Relay == addr && n.cfg.Relays != nil {
		// Named with --relay: this machine vouches for it (see registry.Server.Learnt).
		if err := n.cfg.Relays.Vouch(addr); err != nil {
			n.log.Error("recording the relay in the registry", "file", n.cfg.Relays.Path(), "err", err)
		}
	}
	n.log.Info("connected to the relay", "relay_addr", addr, "relay_name", c.welcome.Relay, "latency", rtt.Round(time.Microsecond))
	return c, nil
}

// connectAny connects to the configured relay or, with AutoRelay, to the
// first relay of the registry's fastest-first list that it can connect to.
// With AutoRelay, a relay that refuses the node (another token, say) is
// skipped like one that cannot be reached; only when every relay refused for
// good is the error one that retrying cannot fix.
func (n *Node) connectAny(ctx context.Context) (*relayConn, error) {
	if n.cfg.Relay != AutoRelay {
		return n.connectSession(ctx, n.cfg.Relay)
	}
	candidates := autoCandidates(n.cfg.Relays)
	if len(candidates) == 0 {
		return nil, errNoMeasuredRelay(n.cfg.Relays)
	}
	var last error
	allRefused := true
	for _, sv := range candidates {
		c, err := n.connectSession(ctx, sv.Address)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		level := slog.LevelDebug // unreachable: Run says so if none is reachable
		if isFatal(err) {
			level = slog.LevelWarn // refused: worth fixing, or removing the relay
		}
		n.log.Log(ctx, level, "cannot use this relay; trying the next fastest", "relay_addr", sv.Address, "relay_name", sv.Name, "err", err)
		allRefused = allRefused && isFatal(err)
		last = err
	}
	if allRefused {
		return nil, fmt.Errorf("every relay in %s refused this node; the last said: %w", n.cfg.Relays.Path(), last)
	}
	return nil, fmt.Errorf("no relay in %s could be reached; the last: %v", n.cfg.Relays.Path(), last)
}

// autoCandidates are the relays --relay auto may use: those with a measured
// latency that this machine vouches for, fastest first. A relay only heard
// of from a peer is not one until someone here adds it (relays add), so no
// peer can make a node dial, and send its token's MACs to, an address of the
// peer's choosing.
func autoCandidates(relays *registry.Servers) []registry.Server {
	var out []registry.Server
	for _, sv := range relays.List() {
		if sv.Latency > 0 && !sv.Learnt {
			out = append(out, sv)
		}
	}
	return out
}

func errNoMeasuredRelay(relays *registry.Servers) error {
	return fmt.Errorf("--relay auto: no relay in %s has a measured latency; add one with 'p2prc relays add HOST:PORT' or measure the known ones with 'p2prc relays probe'", relays.Path())
}

// checkAuto checks a configuration that asks for AutoRelay.
func (c *NodeConfig) checkAuto() error {
	if c.Relay != AutoRelay {
		return nil
	}
	if c.Relays == nil {
		return errors.New("node: --relay auto needs the relay registry (reverse_proxy_server.json)")
	}
	if len(autoCandidates(c.Relays)) == 0 {
		return errNoMeasuredRelay(c.Relays)
	}
	return nil
}
