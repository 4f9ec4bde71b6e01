package tunnel

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/registry"
)

// NewQueryNode returns a node that only asks relays questions: Probe,
// ProbeAll and ListMappings. Relay and Exposes are not used. Token is needed
// by ListMappings and makes Probe measure with pings; Key is needed by
// ListMappings (the mappings belong to it), and a nil Key is replaced by a
// throwaway one. Its connections are query sessions, which never replace a
// running node's session on the relay.
func NewQueryNode(cfg NodeConfig) (*Node, error) {
	if cfg.Key == nil {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		cfg.Key = k
	}
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("node: the identity key is malformed")
	}
	cfg.setDefaults()
	id := mux.NodeID(cfg.Key.Public().(ed25519.PublicKey))
	return &Node{cfg: cfg, log: cfg.Logger, id: id}, nil
}

// ProbeResult is what probing one relay found.
type ProbeResult struct {
	Address string        // the relay's control address
	Name    string        // the relay's name, as it gives it
	Latency time.Duration // the smallest round trip measured; 0 when Err is set
	// Pings is how many round trips were measured: latencyPings with a
	// token (ping and pong in an authenticated query session), 1 without
	// (from hello to the relay's challenge, which needs no token).
	Pings int
	Err   error
}

// Probe measures the relay at addr and records what it found in the relay
// registry (name, latency, last seen). A relay that cannot be reached keeps
// the latency it had.
func (n *Node) Probe(ctx context.Context, addr string) ProbeResult {
	res := ProbeResult{Address: addr}
	learnt := false
	if n.cfg.Relays != nil {
		sv, _ := n.cfg.Relays.Get(addr)
		learnt = sv.Learnt
	}
	if len(n.cfg.Token) == 0 || learnt { // no MACs for a relay only a peer vouches for
		res.Name, res.Latency, res.Err = n.greet(ctx, addr)
		res.Pings = 1
	} else {
		res.Name, res.Latency, res.Err = n.ping(ctx, addr)
		res.Pings = latencyPings
	}
	if res.Err != nil {
		res.Latency, res.Pings = 0, 0
		return res
	}
	n.recordRelay(addr, res.Name, res.Latency)
	return res
}

// ping measures addr in an authenticated query session.
func (n *Node) ping(ctx context.Context, addr string) (string, time.Duration, error) {
	c, err := n.connect(ctx, addr, true)
	if err != nil {
		return "", 0, err
	}
	rtt, err := measureLatency(c.ctrl, latencyPings, n.cfg.HandshakeTimeout)
	if err != nil {
		c.close()
		return "", 0, err
	}
	wait := sendBounded(c.ctrl, &mux.Close{Reason: "probe done"})
	c.close()
	wait()
	return c.welcome.Relay, rtt, nil
}

// greet measures addr without the token: hello to challenge.
func (n *Node) greet(ctx context.Context, addr string) (string, time.Duration, error) {
	conn, err := n.dial(ctx, addr)
	if err != nil {
		return "", 0, err
	}
	ym, err := mux.Client(mux.NewWire(conn.Conn), n.cfg.Session)
	if err != nil {
		conn.Close()
		return "", 0, err
	}
	defer ym.Close()
	stop := context.AfterFunc(ctx, func() { ym.Close() })
	defer stop()
	st, err := ym.OpenStream()
	if err != nil {
		return "", 0, err
	}
	ch, rtt, err := mux.NewConn(st, 0).Greet(n.cfg.Name, n.cfg.HandshakeTimeout)
	if err != nil {
		return "", 0, err
	}
	return ch.Relay, rtt, nil
}

// probeParallel bounds how many relays ProbeAll measures at once.
const probeParallel = 4

// ProbeAll probes every relay in the registry, a few at a time, and returns
// the results in the registry's order (as it was before probing).
func (n *Node) ProbeAll(ctx context.Context) ([]ProbeResult, error) {
	if n.cfg.Relays == nil {
		return nil, errors.New("probe: no relay registry")
	}
	relays := n.cfg.Relays.List()
	results := make([]ProbeResult, len(relays))
	sem := make(chan struct{}, probeParallel)
	var wg sync.WaitGroup
	for i, sv := range relays {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = n.Probe(ctx, sv.Address)
		})
	}
	wg.Wait()
	return results, ctx.Err()
}

// ListMappings asks the relay at addr, in an authenticated query session,
// for the mappings it holds for this node's identity.
func (n *Node) ListMappings(ctx context.Context, addr string) ([]registry.Mapping, error) {
	if len(n.cfg.Token) == 0 {
		return nil, errors.New("a token is required to ask a relay for its mappings (--token-file or P2PRC_TOKEN)")
	}
	c, err := n.connect(ctx, addr, true)
	if err != nil {
		return nil, err
	}
	defer c.close()
	c.ctrl.SetDeadline(time.Now().Add(n.cfg.HandshakeTimeout))
	const id = 1
	if err := c.ctrl.Send(&mux.ListMappings{ID: id}); err != nil {
		return nil, err
	}
	for {
		m, err := c.ctrl.Recv()
		if err != nil {
			return nil, fmt.Errorf("waiting for the relay's list: %s", describeEnd(err))
		}
		switch m := m.(type) {
		case *mux.MappingList:
			if m.ID == id {
				return n.mappingsOf(m), nil
			}
		case *mux.Error:
			return nil, m
		case *mux.Close:
			return nil, fmt.Errorf("the relay closed the session: %s", m.Reason)
		}
	}
}

// mappingsOf turns the relay's list into mapping records of this node.
func (n *Node) mappingsOf(l *mux.MappingList) []registry.Mapping {
	ms := make([]registry.Mapping, 0, len(l.Mappings))
	for _, mi := range l.Mappings {
		if registry.TypeOf(mi.Network) == "" || mi.Port < 1 || mi.Port > 65535 {
			continue // not a mapping this build can show
		}
		ms = append(ms, registry.Mapping{
			ServerName: mi.Relay, Address: mi.PublicHost, Type: registry.TypeOf(mi.Network), BlindPort: mi.Port,
			Owner: n.id, NodeName: mi.Node, Local: mi.Local, Created: fromUnix(mi.Created), LastSeen: fromUnix(mi.LastSeen),
		})
	}
	return ms
}

func fromUnix(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}
