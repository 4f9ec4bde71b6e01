package tunnel

import "sync"

// pipes is a session's set of live pipes, keyed by yamux stream ID, so that a
// reset from the peer can find the pipe it names and so that a session that
// ends can abort every pipe it still carries.
type pipes struct {
	mu     sync.Mutex
	m      map[uint32]*pipe
	closed bool

	// early holds resets that arrived before their pipe was added: a node
	// adds its pipe only once it has dialled the local service, and the
	// reset of a visitor that goes at once (a port scanner) gets there
	// first. ring bounds it, evicting the oldest; stream IDs are never
	// reused in a session, so a stale entry is harmless.
	early map[uint32]struct{}
	ring  []uint32
	next  int
}

// maxEarlyResets bounds how many early resets a session remembers.
const maxEarlyResets = 1024

// add registers p under id. It reports false, and p must not start, once the
// set is closed (the session is ending) or when the peer already reset id.
func (ps *pipes) add(id uint32, p *pipe) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return false
	}
	if _, ok := ps.early[id]; ok {
		delete(ps.early, id)
		return false
	}
	if ps.m == nil {
		ps.m = make(map[uint32]*pipe)
	}
	ps.m[id] = p
	return true
}

func (ps *pipes) remove(id uint32) {
	ps.mu.Lock()
	delete(ps.m, id)
	ps.mu.Unlock()
}

// reset aborts the pipe on stream id, if it is still live, because the peer
// said its end failed.
func (ps *pipes) reset(id uint32) {
	ps.mu.Lock()
	p := ps.m[id]
	if p == nil && !ps.closed {
		ps.rememberReset(id)
	}
	ps.mu.Unlock()
	if p != nil {
		p.abort(false)
	}
}

// rememberReset keeps a reset for a pipe not added yet. Call with mu held.
func (ps *pipes) rememberReset(id uint32) {
	if _, ok := ps.early[id]; ok {
		return
	}
	if ps.early == nil {
		ps.early = make(map[uint32]struct{})
		ps.ring = make([]uint32, maxEarlyResets)
	}
	if old := ps.ring[ps.next]; old != 0 {
		delete(ps.early, old)
	}
	ps.ring[ps.next] = id
	ps.next = (ps.next + 1) % len(ps.ring)
	ps.early[id] = struct{}{}
}

// closeAll aborts every live pipe and refuses new ones.
func (ps *pipes) closeAll() {
	ps.mu.Lock()
	ps.closed = true
	all := make([]*pipe, 0, len(ps.m))
	for _, p := range ps.m {
		all = append(all, p)
	}
	ps.mu.Unlock()
	for _, p := range all {
		p.abort(false)
	}
}

func (ps *pipes) len() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.m)
}
