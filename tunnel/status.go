package tunnel

import (
	"cmp"
	"slices"
	"time"

	"github.com/p2prc/p2prc/registry"
)

// Status is a snapshot of a relay or a node, for a status page and for
// metrics. Node names and local targets come from peers: whoever shows them
// must escape them.
type Status struct {
	Role       string       `json:"role"`                  // "relay" or "node"
	Name       string       `json:"name"`                  // the relay's name, or the node's
	Started    time.Time    `json:"started"`               // when the relay served or the node was made
	PublicHost string       `json:"public_host,omitempty"` // the host visitors use, once known
	Relay      string       `json:"relay,omitempty"`       // a node's relay, host:port
	RelayName  string       `json:"relay_name,omitempty"`  // a node's relay's name, once known
	Nodes      []NodeStatus `json:"nodes"`                 // a relay's nodes; a node's own entry
}

// NodeStatus is one node and its mappings. On a relay, a node that went
// away is listed while its lease keeps any of its ports.
type NodeStatus struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Remote    string          `json:"remote,omitempty"` // where the node's session comes from (relay only)
	Connected bool            `json:"connected"`
	Since     time.Time       `json:"since,omitzero"`     // connected since
	LastSeen  time.Time       `json:"last_seen,omitzero"` // last connected, when not now
	Mappings  []MappingStatus `json:"mappings"`
}

// MappingStatus is one mapping and what flowed through it.
type MappingStatus struct {
	Type    string       `json:"type"` // "TCP" or "UDP"
	Port    int          `json:"public_port"`
	Public  string       `json:"public_addr"` // host:port visitors use
	Local   string       `json:"local"`       // the node's local target
	Created time.Time    `json:"created"`
	Traffic TrafficStats `json:"traffic"`
}

// Sessions is the number of connected nodes (a relay) or sessions (a node: 0 or 1).
func (s Status) Sessions() int {
	n := 0
	for _, nd := range s.Nodes {
		if nd.Connected {
			n++
		}
	}
	return n
}

// Status reports the relay's nodes, mappings and traffic now.
func (r *Relay) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{Role: "relay", Name: r.cfg.Name, Started: r.started, PublicHost: r.cfg.PublicHost}
	index := make(map[string]int) // node ID -> index in st.Nodes
	for id, s := range r.sessions {
		index[id] = len(st.Nodes)
		st.Nodes = append(st.Nodes, NodeStatus{ID: id, Name: s.peer.Name, Remote: s.remote, Connected: true, Since: s.since})
	}
	for _, m := range r.maps.List() {
		i, ok := index[m.Owner]
		if !ok {
			i = len(st.Nodes)
			index[m.Owner] = i
			st.Nodes = append(st.Nodes, NodeStatus{ID: m.Owner, Name: m.NodeName})
		}
		nd := &st.Nodes[i]
		if !nd.Connected && m.LastSeen.After(nd.LastSeen) {
			nd.LastSeen = m.LastSeen
		}
		nd.Mappings = append(nd.Mappings, mappingStatus(m, &r.traffic))
	}
	sortNodes(st.Nodes)
	return st
}

// mappingStatus is m with its traffic, as Status shows it, at relay and node.
func mappingStatus(m registry.Mapping, traffic *trafficTable) MappingStatus {
	return MappingStatus{
		Type: m.Type, Port: m.BlindPort, Public: m.PublicAddr(), Local: m.Local, Created: m.Created,
		Traffic: traffic.stats(portKey{m.Network(), m.BlindPort}),
	}
}

// sortNodes puts connected nodes first, then by name, and each node's
// mappings by port.
func sortNodes(nodes []NodeStatus) {
	slices.SortFunc(nodes, func(a, b NodeStatus) int {
		if a.Connected != b.Connected {
			if a.Connected {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	for _, nd := range nodes {
		slices.SortFunc(nd.Mappings, func(a, b MappingStatus) int {
			return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Type, b.Type))
		})
	}
}
