package tunnel

import (
	"encoding/json"
	"log/slog"
	"net"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/p2prc/p2prc/iptable"
	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/registry"
)

// What relay and node tell each other ("broadcast as a reverse proxy"): once
// a node's grants are in, it sends the relays it knows and its IP table; the
// relay merges them and answers with its own, which the node merges. Relays
// thus spread from node to relay to node. Merging follows P2PRC's rules
// (registry.Servers.Merge, iptable.Table.Merge): what a machine knows first
// hand is never overwritten by what a peer says.

// ownEntry remembers the entry this node last wrote for itself, so that a
// node that moves to another relay (or another port) replaces its old entry
// rather than leaving it behind.
type ownEntry struct {
	mu   sync.Mutex
	last *iptable.Entry
}

// advertise keeps the node's own entry in its IP table current: reachable at
// the relay's public host and the port granted for its first TCP expose
// (and, if it has one, the first UDP expose's port as UDPServerPort). A node
// without a TCP grant writes no entry: ServerPort would be empty, and P2PRC
// would take every such node for one machine.
func (s *nodeSession) advertise(ms []registry.Mapping) {
	f := s.n.cfg.IPTable
	if f == nil {
		return
	}
	e, ok := s.n.relayedEntry(s.welcome.PublicHost, ms)
	if !ok {
		return
	}
	o := &s.n.own
	o.mu.Lock()
	defer o.mu.Unlock()
	err := f.Update(func(t *iptable.Table) bool {
		removed := 0
		if o.last != nil && !o.last.SameNode(e) {
			removed = t.Remove(*o.last)
		}
		return upsertKeeping(t, e) || removed > 0
	})
	if err != nil {
		s.log.Error("writing this node's entry in the IP table", "file", f.Path(), "err", err)
		return
	}
	o.last = &e
}

// previousEntry is the entry the node wrote for itself when it last ran, as
// its mapping file (its grants of then) implies, or nil.
func (n *Node) previousEntry() *iptable.Entry {
	if n.cfg.Mappings == nil {
		return nil
	}
	ms := n.cfg.Mappings.List()
	if len(ms) == 0 {
		return nil
	}
	e, ok := n.relayedEntry(ms[0].Address, ms)
	if !ok {
		return nil
	}
	return &e
}

// relayedEntry is the node's own IP table entry for the grants ms.
func (n *Node) relayedEntry(publicHost string, ms []registry.Mapping) (iptable.Entry, bool) {
	granted := func(network string) (port int) {
		for _, x := range n.cfg.Exposes {
			for _, m := range ms {
				if x.Network == network && m.Network() == network && m.Local == x.Local {
					return m.BlindPort
				}
			}
		}
		return 0
	}
	port := granted("tcp")
	if port == 0 {
		return iptable.Entry{}, false
	}
	e := iptable.RelayedEntry(n.displayName(), publicHost, port)
	if udp := granted("udp"); udp != 0 {
		e.UDPServerPort = strconv.Itoa(udp)
	}
	return e, true
}

// upsertKeeping puts e in t and reports whether t changed. If t holds the
// same machine already (written by P2PRC, say), the fields e sets replace
// that entry's and everything else in it (keys P2PRC added, its public
// key...) is kept.
func upsertKeeping(t *iptable.Table, e iptable.Entry) (changed bool) {
	matches := 0
	for _, old := range t.Entries {
		if !old.SameNode(e) {
			continue
		}
		if matches++; matches > 1 {
			continue
		}
		updated := old
		updated.Name, updated.IPV4, updated.ServerPort, updated.NAT = e.Name, e.IPV4, e.ServerPort, e.NAT
		updated.EscapeImplementation, updated.ProxyServer = e.EscapeImplementation, e.ProxyServer
		if e.UDPServerPort != "" {
			updated.UDPServerPort = e.UDPServerPort
		}
		changed = !reflect.DeepEqual(updated, old)
		e = updated
	}
	if matches == 1 && !changed {
		return false // already as it should be: no write
	}
	t.Upsert(e)
	return true
}

// exchange sends the relay what this node knows and merges the answer. It
// runs once per session, when the first grants are in, and waits at most a
// handshake timeout for the answer: the node reports itself ready after it,
// so its files are complete when it does. A node that keeps neither a
// registry nor an IP table has nothing to tell or keep, and skips it.
func (s *nodeSession) exchange() {
	if s.n.cfg.Relays == nil && s.n.cfg.IPTable == nil {
		return
	}
	s.exchangeOnce.Do(func() {
		out := outgoingExchange(s.n.cfg.Relays, s.n.cfg.IPTable, s.n.own.get())
		if err := s.ctrl.Send(out); err != nil {
			return
		}
		select {
		case in := <-s.exchanged:
			s.n.merge(in, s.log)
		case <-s.done:
		case <-time.After(s.n.cfg.HandshakeTimeout):
			s.log.Warn("the relay did not answer our exchange of known relays and IP table; carrying on without")
		}
	})
}

// receiveExchange hands the relay's answer to exchange. An exchange nobody
// waits for (it came too late, or unasked) is dropped.
func (s *nodeSession) receiveExchange(x *mux.Exchange) {
	select {
	case s.exchanged <- x:
	default:
		s.log.Debug("dropping an exchange the node did not wait for")
	}
}

func (o *ownEntry) get() *iptable.Entry {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last
}

// merge takes in what a node learnt from its relay.
func (n *Node) merge(x *mux.Exchange, log *slog.Logger) {
	mergeExchange(n.cfg.Relays, n.cfg.IPTable, x, log, "the relay")
}

// mergeExchange merges x, learnt from peer ("the relay", "the node"), into
// the registry and the IP table, either of which may be nil, and logs what
// it learnt or why it could not.
func mergeExchange(relays *registry.Servers, table *iptable.File, x *mux.Exchange, log *slog.Logger, peer string) {
	var addedRelays, addedEntries int
	if relays != nil && len(x.Relays) > 0 {
		in := make([]registry.Server, 0, len(x.Relays))
		for _, ri := range x.Relays {
			in = append(in, registry.Server{Name: ri.Name, Address: ri.Address, Fingerprint: ri.Fingerprint})
		}
		var err error
		if addedRelays, err = relays.Merge(in); err != nil {
			log.Error("merging relays learnt from "+peer, "file", relays.Path(), "err", err)
		}
	}
	if table != nil && len(x.IPTable) > 0 {
		err := table.Update(func(t *iptable.Table) bool {
			addedEntries = t.Merge(x.IPTable)
			return addedEntries > 0
		})
		if err != nil {
			log.Error("merging the IP table learnt from "+peer, "file", table.Path(), "err", err)
		}
	}
	if addedRelays > 0 || addedEntries > 0 {
		log.Info("learnt from "+peer, "relays", addedRelays, "ip_table_entries", addedEntries)
	}
}

// outgoingExchange is what a machine tells a peer: its relays, fastest first,
// and its IP table with its own entry (if any) first, each within the caps.
func outgoingExchange(relays *registry.Servers, table *iptable.File, own *iptable.Entry) *mux.Exchange {
	x := &mux.Exchange{Relays: []mux.RelayInfo{}, IPTable: []iptable.Entry{}}
	if relays != nil {
		for _, sv := range relays.List() {
			if len(x.Relays) == mux.MaxExchangeRelays {
				break
			}
			x.Relays = append(x.Relays, mux.RelayInfo{Name: sv.Name, Address: sv.Address, Fingerprint: sv.Fingerprint})
		}
	}
	if table == nil {
		return x
	}
	t, err := table.Read()
	if err != nil {
		return x // reported where the table is written
	}
	if own != nil {
		x.IPTable = append(x.IPTable, *own)
	}
	for _, e := range t.Entries {
		if len(x.IPTable) == mux.MaxExchangeEntries {
			break
		}
		if own == nil || !own.SameNode(e) {
			x.IPTable = append(x.IPTable, e)
		}
	}
	fitFrame(x, mux.DefaultMaxFrameSize)
	return x
}

// fitFrame drops entries, then relays, from the end of x until its payload
// fits in limit, the peer's frame cap: a peer closes the session on a frame
// above it, and the node would reconnect only to send it again. Large
// entries (long keys or custom information) are what makes a table so big.
func fitFrame(x *mux.Exchange, limit int) {
	for {
		b, err := json.Marshal(x)
		if err != nil || len(b) <= limit {
			return
		}
		switch {
		case len(x.IPTable) > 1:
			x.IPTable = x.IPTable[:len(x.IPTable)/2]
		case len(x.Relays) > 1:
			x.Relays = x.Relays[:len(x.Relays)/2]
		default:
			x.IPTable, x.Relays = x.IPTable[:0], x.Relays[:0]
			return
		}
	}
}

// The relay's side.

// advertise lists the relay in its own registry and IP table: it is where
// nodes learn of it from each other. addr is the address Serve listens on,
// whose port the advertised address uses unless ControlAddr says otherwise.
func (r *Relay) advertise(addr net.Addr) {
	r.controlAddr = r.cfg.ControlAddr
	if r.controlAddr == "" {
		port := "0"
		if ta, ok := addr.(*net.TCPAddr); ok {
			port = strconv.Itoa(ta.Port)
		}
		r.controlAddr = net.JoinHostPort(r.cfg.PublicHost, port)
	}
	if r.cfg.Relays != nil {
		if err := r.cfg.Relays.Upsert(registry.Server{Name: r.cfg.Name, Address: r.controlAddr, LastSeen: time.Now()}); err != nil {
			r.log.Error("listing this relay in the registry", "file", r.cfg.Relays.Path(), "err", err)
		}
	}
	if r.cfg.IPTable != nil {
		e := r.ownEntry()
		err := r.cfg.IPTable.Update(func(t *iptable.Table) bool { return upsertKeeping(t, e) })
		if err != nil {
			r.log.Error("writing this relay's entry in the IP table", "file", r.cfg.IPTable.Path(), "err", err)
		}
	}
}

// ownEntry is the relay's IP table entry: a proxy server, reachable at its
// public host, with its control port as ServerPort (where a P2PRC node finds
// the relay to connect to).
func (r *Relay) ownEntry() iptable.Entry {
	host, port, _ := net.SplitHostPort(r.controlAddr)
	return iptable.Entry{Name: r.cfg.Name, IPV4: host, ServerPort: port, ProxyServer: true}
}

// answerExchange merges what a node tells and answers with what the relay
// knows. A session gets one exchange: more would let a node make the relay
// rewrite its files at will. The work (reading and writing files) runs beside
// the control loop, which keeps answering pings meanwhile.
func (s *relaySession) answerExchange(x *mux.Exchange) {
	if s.exchanged {
		s.ctrl.Send(&mux.Error{Code: mux.CodeBadRequest, Text: "one exchange per session; this one is ignored"})
		return
	}
	s.exchanged = true
	s.tasks.spawn(func() { s.mergeAndAnswer(x) })
}

func (s *relaySession) mergeAndAnswer(x *mux.Exchange) {
	r := s.r
	mergeExchange(r.cfg.Relays, r.cfg.IPTable, x, s.log, "the node")
	var own *iptable.Entry
	if r.cfg.IPTable != nil {
		e := r.ownEntry()
		own = &e
	}
	s.ctrl.Send(outgoingExchange(r.cfg.Relays, r.cfg.IPTable, own))
}

// answerListMappings tells a node the mappings the relay holds for it, and
// only for it.
func (s *relaySession) answerListMappings(req *mux.ListMappings) {
	list := &mux.MappingList{ID: req.ID, Mappings: []mux.MappingInfo{}}
	for _, m := range s.r.maps.List() {
		if m.Owner != s.peer.ID {
			continue
		}
		if len(list.Mappings) == mux.MaxListedMappings {
			break
		}
		list.Mappings = append(list.Mappings, mux.MappingInfo{
			Network: m.Network(), Port: m.BlindPort, PublicHost: m.Address, Relay: m.ServerName,
			Node: m.NodeName, Local: m.Local, Created: unixOrZero(m.Created), LastSeen: unixOrZero(m.LastSeen),
		})
	}
	s.ctrl.Send(list)
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
