// Package registry keeps the two state files p2prc shares with the original
// P2PRC design: reverse_proxy_mapping.json (on a relay every mapping, the
// authority on which public ports are taken; on a node its own) and
// reverse_proxy_server.json (the relays this machine knows).
//
// Each file is held by a table that is safe for concurrent use and saves
// every change atomically (mode 0600) before the method returns. When the
// save fails the change is undone in memory too, so memory and disk agree.
// A missing file is an empty table; a corrupt one is an error and is never
// overwritten.
package registry

import (
	"errors"
	"maps"
	"sync"

	"github.com/p2prc/p2prc/registry/jsonfile"
)

// File names inside a state directory, fixed by the original design.
const (
	MappingFileName = "reverse_proxy_mapping.json"
	ServerFileName  = "reverse_proxy_server.json"
)

// fileMode is the permission of both files: they name nodes and relays.
const fileMode = 0o600

// Errors callers branch on.
var (
	// ErrOwned: the port is held by a mapping of another node.
	ErrOwned = errors.New("port owned by another node")
	// ErrInvalid: an entry given to Put, Replace or Upsert is malformed
	// (type not TCP/UDP, port outside 1..65535, address not host:port).
	ErrInvalid = errors.New("invalid entry")
	// ErrCorrupt: a state file exists but cannot be read; it is left as is.
	// It is jsonfile.ErrCorrupt, so either may be used with errors.Is.
	ErrCorrupt = jsonfile.ErrCorrupt
)

// errUnchanged lets an edit say there is nothing to save.
var errUnchanged = errors.New("unchanged")

// applyChange applies edit to a copy of *table under mu, saves the copy and
// only then makes it the table, so a failed save leaves memory as it was and
// memory never runs ahead of disk. An edit returning errUnchanged skips the
// save. Saves are serialised by mu, so the file always holds the latest table.
func applyChange[K comparable, V any](mu *sync.RWMutex, table *map[K]V, save, edit func(next map[K]V) error) error {
	mu.Lock()
	defer mu.Unlock()
	next := maps.Clone(*table)
	if next == nil {
		next = make(map[K]V)
	}
	if err := edit(next); err != nil {
		if errors.Is(err, errUnchanged) {
			return nil
		}
		return err
	}
	if err := save(next); err != nil {
		return err
	}
	*table = next
	return nil
}
