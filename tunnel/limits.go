package tunnel

import (
	"cmp"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2prc/p2prc/mux"
)

// Limits bound what peers can make a relay hold. Each is a flag of
// `p2prc relay`, named in the refusal the peer gets and in the relay's log.
// Zero values mean the defaults below, chosen so that normal use never
// meets them; there is no "unlimited".
type Limits struct {
	// SessionsPerAddress caps the connections from one source address (an
	// IPv4 address or an IPv6 /64), handshakes in progress included. Many
	// nodes behind one NAT share an address. Zero: 64.
	SessionsPerAddress int
	// PendingHandshakes caps the connections, from everyone, that have not
	// finished their handshake. Beyond it connections are closed at once,
	// without words: answering would cost what the cap protects. Zero: 1024.
	PendingHandshakes int
	// AuthFailuresPerMinute caps failed authentications from one source
	// address; beyond it the address is refused until its failures age out
	// (a leaky bucket draining this many a minute). Zero: 10.
	AuthFailuresPerMinute int
	// MappingsPerNode caps the mappings one node identity holds, leased
	// ones included. Zero: 64.
	MappingsPerNode int
	// Mappings caps the mappings of the whole relay. Zero: 10,000 (the
	// default port range holds 10,000 ports).
	Mappings int
	// StreamsPerSession caps the visitor streams in flight to one node,
	// and so the visitors one node serves at once. Zero: 2048.
	StreamsPerSession int
	// MaxFrameSize caps a control frame's payload after the handshake
	// (before it, mux.HandshakeMaxFrame applies). Zero: mux.DefaultMaxFrameSize.
	MaxFrameSize int
}

// DefaultLimits are the limits a relay applies unless told otherwise.
func DefaultLimits() Limits {
	return Limits{
		SessionsPerAddress:    64,
		PendingHandshakes:     1024,
		AuthFailuresPerMinute: 10,
		MappingsPerNode:       64,
		Mappings:              10000,
		StreamsPerSession:     2048,
		MaxFrameSize:          mux.DefaultMaxFrameSize,
	}
}

// withDefaults fills the zero fields of l.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	l.SessionsPerAddress = cmp.Or(l.SessionsPerAddress, d.SessionsPerAddress)
	l.PendingHandshakes = cmp.Or(l.PendingHandshakes, d.PendingHandshakes)
	l.AuthFailuresPerMinute = cmp.Or(l.AuthFailuresPerMinute, d.AuthFailuresPerMinute)
	l.MappingsPerNode = cmp.Or(l.MappingsPerNode, d.MappingsPerNode)
	l.Mappings = cmp.Or(l.Mappings, d.Mappings)
	l.StreamsPerSession = cmp.Or(l.StreamsPerSession, d.StreamsPerSession)
	l.MaxFrameSize = cmp.Or(l.MaxFrameSize, d.MaxFrameSize)
	return l
}

func (l Limits) validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"--max-sessions-per-address", l.SessionsPerAddress},
		{"--max-pending-handshakes", l.PendingHandshakes},
		{"--max-auth-failures", l.AuthFailuresPerMinute},
		{"--max-mappings-per-node", l.MappingsPerNode},
		{"--max-mappings", l.Mappings},
		{"--max-streams-per-session", l.StreamsPerSession},
	} {
		if f.v < 0 {
			return fmt.Errorf("relay: %s is %d; give a positive number (0 means the default)", f.name, f.v)
		}
	}
	if l.MaxFrameSize < 0 || (l.MaxFrameSize > 0 && l.MaxFrameSize < mux.HandshakeMaxFrame) {
		return fmt.Errorf("relay: --max-frame-size %d is below %d bytes; control messages would not fit", l.MaxFrameSize, mux.HandshakeMaxFrame)
	}
	return nil
}

// Names of the limits, as in flags, logs and Relay.Refusals.
const (
	limitSessionsPerAddress = "max-sessions-per-address"
	limitPendingHandshakes  = "max-pending-handshakes"
	limitAuthFailures       = "max-auth-failures"
	limitMappingsPerNode    = "max-mappings-per-node"
	limitMappings           = "max-mappings"
	limitStreamsPerSession  = "max-streams-per-session"
	limitFrameSize          = "max-frame-size"
	limitHandshakeTimeout   = "handshake-timeout"
	// limitOneStream is not a flag: a node opens exactly one stream.
	limitOneStream = "one-stream-per-node"
)

// sourceKey groups connections by who makes them: an IPv4 address, or an
// IPv6 /64 (one host usually has a whole /64 to pick addresses from).
func sourceKey(a net.Addr) netip.Prefix {
	var ip netip.Addr
	if tcp, ok := a.(*net.TCPAddr); ok {
		ip = tcp.AddrPort().Addr().Unmap()
	} else if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		ip = ap.Addr().Unmap()
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits) // the zero Prefix for an unknown address: one shared bucket
	return p
}

// maxTrackedSources bounds the per-source table. Entries live while a
// source has connections or recent failures; past the bound, drained
// entries are swept, and failures of new sources are not recorded.
const maxTrackedSources = 1 << 16

// admission tracks, per source address, the connections and the failed
// authentications, and globally the handshakes in progress.
type admission struct {
	limits Limits

	mu      sync.Mutex
	pending int
	sources map[netip.Prefix]*source
}

type source struct {
	conns    int       // admitted connections, pending or authenticated
	refusing int       // connections being refused with words
	fails    float64   // the failure bucket's level at failsAt
	failsAt  time.Time // when fails was last brought up to date
}

// verdict is what admit decided for one connection.
type verdict int

const (
	admitted verdict = iota
	refuseWithWords
	drop
)

// ticket is one connection's place in the admission table.
type ticket struct {
	a       *admission
	key     netip.Prefix
	verdict verdict
	refusal *mux.Error // why, for refuseWithWords
	limit   string     // which limit refused it
	max     int        // that limit's configured value, for the log
	pending bool
}

// admit decides on a new connection from key.
func (a *admission) admit(key netip.Prefix, now time.Time) *ticket {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := &ticket{a: a, key: key}
	if a.pending >= a.limits.PendingHandshakes {
		t.verdict, t.limit, t.max = drop, limitPendingHandshakes, a.limits.PendingHandshakes
		return t
	}
	s := a.sources[key]
	if s == nil {
		if a.sources == nil {
			a.sources = make(map[netip.Prefix]*source)
		}
		s = &source{}
		a.sources[key] = s
	}
	switch {
	case s.conns >= a.limits.SessionsPerAddress:
		t.limit, t.max = limitSessionsPerAddress, a.limits.SessionsPerAddress
		t.refusal = &mux.Error{Code: mux.CodeBusy, Text: fmt.Sprintf(
			"this relay already has %d connections from your address, its limit (--max-sessions-per-address); try again later or ask its operator to raise the limit",
			a.limits.SessionsPerAddress)}
	case a.failLevel(s, now) > float64(a.limits.AuthFailuresPerMinute-1): // room for one more failure?
		t.limit, t.max = limitAuthFailures, a.limits.AuthFailuresPerMinute
		t.refusal = &mux.Error{Code: mux.CodeBusy, Text: fmt.Sprintf(
			"too many failed authentications from your address (limit %d a minute, --max-auth-failures); check the node's token, then try again in a minute",
			a.limits.AuthFailuresPerMinute)}
	}
	if t.refusal != nil {
		if s.refusing > 0 { // one refusal with words at a time per source; the rest are dropped
			t.verdict = drop
			a.forgetIfIdle(key, s, now)
			return t
		}
		s.refusing++
		t.verdict = refuseWithWords
	} else {
		s.conns++
	}
	a.pending++
	t.pending = true
	return t
}

// authenticated moves t from the handshakes in progress to the sessions.
func (t *ticket) authenticated() {
	t.a.mu.Lock()
	defer t.a.mu.Unlock()
	if t.pending {
		t.pending = false
		t.a.pending--
	}
}

// done releases t's place; call once, when the connection is closed.
func (t *ticket) done(now time.Time) {
	a := t.a
	a.mu.Lock()
	defer a.mu.Unlock()
	if t.pending {
		t.pending = false
		a.pending--
	}
	s := a.sources[t.key]
	if s == nil || t.verdict == drop {
		return
	}
	if t.verdict == refuseWithWords {
		s.refusing--
	} else {
		s.conns--
	}
	a.forgetIfIdle(t.key, s, now)
}

// authFailed records a failed authentication from key.
func (a *admission) authFailed(key netip.Prefix, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.sources[key]
	if s == nil {
		if a.sources == nil {
			a.sources = make(map[netip.Prefix]*source)
		}
		if len(a.sources) >= maxTrackedSources {
			a.sweep(now)
			if len(a.sources) >= maxTrackedSources {
				return
			}
		}
		s = &source{}
		a.sources[key] = s
	}
	s.fails = a.failLevel(s, now) + 1
}

// failLevel brings s's failure bucket up to date: it drains at
// AuthFailuresPerMinute a minute.
func (a *admission) failLevel(s *source, now time.Time) float64 {
	if s.fails > 0 {
		drained := now.Sub(s.failsAt).Minutes() * float64(a.limits.AuthFailuresPerMinute)
		s.fails = max(0, s.fails-drained)
	}
	s.failsAt = now
	return s.fails
}

// forgetIfIdle drops s when it holds nothing. Call with mu held.
func (a *admission) forgetIfIdle(key netip.Prefix, s *source, now time.Time) {
	if s.conns == 0 && s.refusing == 0 && a.failLevel(s, now) == 0 {
		delete(a.sources, key)
	}
}

// sweep drops every idle source. Call with mu held.
func (a *admission) sweep(now time.Time) {
	for k, s := range a.sources {
		a.forgetIfIdle(k, s, now)
	}
}

// refusals counts the refusals of each limit and logs them: the first at
// once, then at most one line per limit every refusalLogEvery, each saying
// how many were refused since the previous line. A flood costs the log a
// line every few seconds, not a line per connection.
type refusals struct {
	mu      sync.Mutex
	byLimit map[string]*refusalCount
}

type refusalCount struct {
	total      atomic.Uint64
	unlogged   uint64
	lastLogged time.Time
}

const refusalLogEvery = 10 * time.Second

// note counts one refusal by limit (whose value was max) and logs it if
// its turn has come; attrs say who was refused.
func (rs *refusals) note(log *slog.Logger, limit string, max int, attrs ...any) {
	rs.mu.Lock()
	if rs.byLimit == nil {
		rs.byLimit = make(map[string]*refusalCount)
	}
	c := rs.byLimit[limit]
	if c == nil {
		c = &refusalCount{}
		rs.byLimit[limit] = c
	}
	total := c.total.Add(1)
	c.unlogged++
	now := time.Now()
	logIt := c.lastLogged.IsZero() || now.Sub(c.lastLogged) >= refusalLogEvery
	var since uint64
	if logIt {
		since, c.unlogged, c.lastLogged = c.unlogged, 0, now
	}
	rs.mu.Unlock()
	if logIt {
		log.Warn("refused by a limit", append([]any{"limit", limit, "max", max, "refused_since_last_line", since, "refused_total", total}, attrs...)...)
	}
}

// snapshot returns the refusal counts by limit name.
func (rs *refusals) snapshot() map[string]uint64 {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make(map[string]uint64, len(rs.byLimit))
	for k, c := range rs.byLimit {
		out[k] = c.total.Load()
	}
	return out
}

// Refusals returns how many times each limit has refused something since
// the relay started, by limit name (the flag's name without its leading dashes, e.g.
// "max-sessions-per-address"). For metrics.
func (r *Relay) Refusals() map[string]uint64 { return r.refusals.snapshot() }
