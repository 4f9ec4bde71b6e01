package registry

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/p2prc/p2prc/registry/jsonfile"
)

// Mappings is the table in reverse_proxy_mapping.json, keyed by (Type,
// BlindPort): a TCP and a UDP mapping may share a port number. It is safe
// for concurrent use; every change is saved before the method returns.
//
// A node keeps its own copy for the one relay it uses; a node that used two
// relays would need one file each, as their ports may collide.
type Mappings struct {
	path string

	mu    sync.RWMutex
	byKey map[mappingKey]Mapping // replaced whole on change, never mutated
}

// OpenMappings loads the table at path. A missing file is an empty table;
// a corrupt one is an error wrapping ErrCorrupt, and is never overwritten.
func OpenMappings(path string) (*Mappings, error) {
	var f MappingFile
	if _, err := jsonfile.Load(path, &f); err != nil {
		return nil, err
	}
	byKey, err := indexMappings(f.Mappings)
	if err != nil { // cannot happen: Load ran the same check via Validate
		return nil, err
	}
	return &Mappings{path: path, byKey: byKey}, nil
}

// Path is the file the table is saved to.
func (t *Mappings) Path() string { return t.path }

// List returns a copy of every mapping, sorted by Type then BlindPort.
func (t *Mappings) List() []Mapping {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return sortedMappings(t.byKey)
}

// Lookup returns the mapping of the public port on network ("tcp" or "udp").
func (t *Mappings) Lookup(network string, port int) (Mapping, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	m, ok := t.byKey[keyOf(network, port)]
	return m, ok
}

// Owner returns the identity holding the public port on network. ok is
// false when no mapping holds it. It satisfies portalloc.Owners.
func (t *Mappings) Owner(network string, port int) (owner string, ok bool) {
	m, ok := t.Lookup(network, port)
	return m.Owner, ok
}

// Find returns the mapping the identity owner already holds for its local
// service (network, local), so a node gets the same port back after a
// reconnect. An empty owner matches nothing.
func (t *Mappings) Find(owner, network, local string) (Mapping, bool) {
	if owner == "" {
		return Mapping{}, false
	}
	typ := TypeOf(network)
	t.mu.RLock()
	defer t.mu.RUnlock()
	var found Mapping
	ok := false
	for _, m := range t.byKey { // the lowest port, should one service hold several
		if m.Owner == owner && m.Type == typ && m.Local == local && (!ok || m.BlindPort < found.BlindPort) {
			found, ok = m, true
		}
	}
	return found, ok
}

// Put inserts m, or replaces the mapping with the same Type and BlindPort.
// It refuses with ErrOwned when that mapping has another Owner, and with
// ErrInvalid when m is malformed. A zero Created keeps the old value.
func (t *Mappings) Put(m Mapping) error {
	m, err := m.check()
	if err != nil {
		return err
	}
	k := keyOf(m.Type, m.BlindPort)
	return t.change(func(next map[mappingKey]Mapping) error {
		if old, ok := next[k]; ok {
			if old.Owner != m.Owner {
				return fmt.Errorf("%w: %d/%s", ErrOwned, m.BlindPort, m.Type)
			}
			if m.Created.IsZero() {
				m.Created = old.Created
			}
		}
		next[k] = m
		return nil
	})
}

// Remove deletes the mapping of the public port on network; absent is fine.
func (t *Mappings) Remove(network string, port int) error {
	k := keyOf(network, port)
	return t.change(func(next map[mappingKey]Mapping) error {
		if _, ok := next[k]; !ok {
			return errUnchanged
		}
		delete(next, k)
		return nil
	})
}

// Replace sets the whole table to ms, as a node does with its own copy.
// It refuses with ErrInvalid a malformed entry or two for one port and type.
func (t *Mappings) Replace(ms []Mapping) error {
	byKey, err := indexMappings(ms)
	if err != nil {
		return err
	}
	return t.change(func(next map[mappingKey]Mapping) error {
		clear(next)
		maps.Copy(next, byKey)
		return nil
	})
}

// Touch sets LastSeen to now on every mapping of owner. An empty owner
// touches nothing.
func (t *Mappings) Touch(owner string, now time.Time) error {
	if owner == "" {
		return nil
	}
	return t.change(func(next map[mappingKey]Mapping) error {
		touched := false
		for k, m := range next {
			if m.Owner == owner {
				m.LastSeen = now
				next[k] = m
				touched = true
			}
		}
		if !touched {
			return errUnchanged
		}
		return nil
	})
}

// change applies edit to a copy of the table and saves it; see applyChange.
func (t *Mappings) change(edit func(next map[mappingKey]Mapping) error) error {
	save := func(next map[mappingKey]Mapping) error {
		return jsonfile.Save(t.path, MappingFile{Mappings: sortedMappings(next)}, fileMode)
	}
	return applyChange(&t.mu, &t.byKey, save, edit)
}

// sortedMappings lists byKey by Type then BlindPort, never nil so the file
// holds [] rather than null.
func sortedMappings(byKey map[mappingKey]Mapping) []Mapping {
	ms := slices.Collect(maps.Values(byKey))
	slices.SortFunc(ms, func(a, b Mapping) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.BlindPort, b.BlindPort))
	})
	if ms == nil {
		ms = []Mapping{}
	}
	return ms
}
