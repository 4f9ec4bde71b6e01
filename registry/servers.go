package registry

import (
	"cmp"
	"maps"
	"slices"
	"sync"

	"github.com/p2prc/p2prc/registry/jsonfile"
)

// MaxMergedServers caps the table as Merge grows it, so relays gossiping
// addresses cannot fill a node's disk. Upsert, a local decision, is not capped.
const MaxMergedServers = 1024

// Servers is the table in reverse_proxy_server.json, keyed by Address. It is
// safe for concurrent use; every change is saved before the method returns.
type Servers struct {
	path string

	mu     sync.RWMutex
	byAddr map[string]Server // replaced whole on change, never mutated
}

// OpenServers loads the table at path. A missing file is an empty table;
// a corrupt one is an error wrapping ErrCorrupt, and is never overwritten.
func OpenServers(path string) (*Servers, error) {
	s := &Servers{path: path}
	if err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Path is the file the table is saved to.
func (s *Servers) Path() string { return s.path }

// List returns a copy of every relay, fastest first: by Latency ascending
// with unmeasured (0) last, then by Address.
func (s *Servers) List() []Server {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return sortedServers(s.byAddr)
}

// Get returns the relay at addr.
func (s *Servers) Get(addr string) (Server, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sv, ok := s.byAddr[addr]
	return sv, ok
}

// Upsert records sv, keyed by Address. Empty or zero fields of sv (Name,
// Fingerprint, Latency, LastSeen) keep the values already known, so a
// caller records only what it learnt. A malformed sv is refused (ErrInvalid).
func (s *Servers) Upsert(sv Server) error {
	if err := sv.check(); err != nil {
		return err
	}
	return s.change(func(next map[string]Server) error {
		old, known := next[sv.Address]
		sv.Name = cmp.Or(sv.Name, old.Name)
		sv.Fingerprint = cmp.Or(sv.Fingerprint, old.Fingerprint)
		sv.Latency = cmp.Or(sv.Latency, old.Latency)
		if sv.LastSeen.IsZero() {
			sv.LastSeen = old.LastSeen
		}
		if known {
			sv.Learnt = old.Learnt // only Merge and Vouch change it
		}
		next[sv.Address] = sv
		return nil
	})
}

// Merge adds the relays in `in` (as heard from a peer) that this machine
// does not know yet and returns how many it added. It never changes a known
// relay: our measurements and certificate pins stay ours. A peer's Latency
// and LastSeen describe the peer's path, not ours, so added relays start
// unmeasured; and a peer's word is no ground to trust a certificate, so they
// start unpinned (the first connection pins, after the relay proves it
// holds the token). Entries with an invalid Address are ignored, and so is
// everything beyond MaxMergedServers known relays.
func (s *Servers) Merge(in []Server) (added int, err error) {
	err = s.change(func(next map[string]Server) error {
		for _, sv := range in {
			if len(next) >= MaxMergedServers {
				break
			}
			if _, known := next[sv.Address]; known || checkAddress(sv.Address) != nil {
				continue
			}
			next[sv.Address] = Server{Name: sv.Name, Address: sv.Address, Learnt: true}
			added++
		}
		if added == 0 {
			return errUnchanged
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return added, nil
}

// Vouch marks the relay at addr as chosen on this machine (see
// Server.Learnt), adding it if it is not known.
func (s *Servers) Vouch(addr string) error {
	if err := (Server{Address: addr}).check(); err != nil {
		return err
	}
	return s.change(func(next map[string]Server) error {
		sv, known := next[addr]
		if known && !sv.Learnt {
			return errUnchanged
		}
		sv.Address, sv.Learnt = addr, false
		next[addr] = sv
		return nil
	})
}

// Remove forgets the relay at addr; absent is fine.
func (s *Servers) Remove(addr string) error {
	return s.change(func(next map[string]Server) error {
		if _, ok := next[addr]; !ok {
			return errUnchanged
		}
		delete(next, addr)
		return nil
	})
}

// change applies edit to a copy of the table and saves it; see applyChange.
//
// Several processes write this file (a running node, `p2prc relays add`,
// `relays probe`), so each change takes the file's lock and starts from what
// the file holds now, not from what this process read earlier: nobody's
// update is lost.
func (s *Servers) change(edit func(next map[string]Server) error) error {
	save := func(next map[string]Server) error {
		return jsonfile.Save(s.path, ServerFile{Servers: sortedServers(next)}, fileMode)
	}
	return withFileLock(s.path, func() error {
		if err := s.reload(); err != nil {
			return err
		}
		return applyChange(&s.mu, &s.byAddr, save, edit)
	})
}

// reload replaces the table with what the file holds.
func (s *Servers) reload() error {
	var f ServerFile
	if _, err := jsonfile.Load(s.path, &f); err != nil {
		return err
	}
	byAddr, err := indexServers(f.Servers)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.byAddr = byAddr
	s.mu.Unlock()
	return nil
}

// sortedServers lists byAddr fastest first, never nil so the file holds []
// rather than null.
func sortedServers(byAddr map[string]Server) []Server {
	ss := slices.Collect(maps.Values(byAddr))
	slices.SortFunc(ss, func(a, b Server) int {
		if (a.Latency == 0) != (b.Latency == 0) {
			if a.Latency == 0 {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(a.Latency, b.Latency), cmp.Compare(a.Address, b.Address))
	})
	if ss == nil {
		ss = []Server{}
	}
	return ss
}
