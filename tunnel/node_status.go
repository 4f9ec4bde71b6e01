package tunnel

import (
	"errors"
	"sync"
	"time"

	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/registry"
)

// nodeState is what a node knows of its session, for Status.
type nodeState struct {
	started time.Time // set once, by NewNode

	mu         sync.Mutex
	connected  bool
	since      time.Time // connected since, or disconnected since
	relayName  string
	publicHost string
	mappings   []registry.Mapping // the latest grants
}

// sessionUp records the grants of a ready session and drops the counters
// of ports the node no longer has. A port kept across reconnects keeps its
// counters and its age.
func (n *Node) sessionUp(w *mux.Welcome, ms []registry.Mapping) {
	keep := make(map[portKey]bool, len(ms))
	for _, m := range ms {
		keep[portKey{m.Network(), m.BlindPort}] = true
	}
	n.traffic.keepOnly(keep)

	st := &n.state
	st.mu.Lock()
	defer st.mu.Unlock()
	created := make(map[portKey]time.Time, len(st.mappings))
	for _, m := range st.mappings {
		created[portKey{m.Network(), m.BlindPort}] = m.Created
	}
	ms = append([]registry.Mapping(nil), ms...)
	for i, m := range ms {
		if t, ok := created[portKey{m.Network(), m.BlindPort}]; ok {
			ms[i].Created = t
		}
	}
	if !st.connected {
		st.connected, st.since = true, time.Now()
	}
	st.relayName, st.publicHost, st.mappings = w.Relay, w.PublicHost, ms
}

// down records that the session ended; it reports whether it had been up.
func (st *nodeState) down() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	was := st.connected
	if was {
		st.connected, st.since = false, time.Now()
	}
	return was
}

// displayName is the node's name, or the one the relay gives a node
// without one.
func (n *Node) displayName() string {
	if n.cfg.Name != "" {
		return n.cfg.Name
	}
	return "node-" + n.id[:8]
}

// Status reports the node's session, its mappings and their traffic now.
// While the node is disconnected it shows the mappings it last had.
func (n *Node) Status() Status {
	st := &n.state
	st.mu.Lock()
	defer st.mu.Unlock()
	name := n.displayName()
	me := NodeStatus{ID: n.id, Name: name, Connected: st.connected}
	if st.connected {
		me.Since = st.since
	} else {
		me.LastSeen = st.since
	}
	for _, m := range st.mappings {
		me.Mappings = append(me.Mappings, mappingStatus(m, &n.traffic))
	}
	nodes := []NodeStatus{me}
	sortNodes(nodes)
	return Status{
		Role: "node", Name: name, Started: st.started, Relay: n.cfg.Relay,
		RelayName: st.relayName, PublicHost: st.publicHost, Nodes: nodes,
	}
}

// observeHandshakeFailure counts a failed handshake that was about the token.
func (n *Node) observeHandshakeFailure(err error) {
	var refused *mux.Error
	if errors.Is(err, mux.ErrRelayProof) || errors.As(err, &refused) && refused.Code == mux.CodeAuth {
		n.cfg.Observer.AuthFailed()
	}
}
