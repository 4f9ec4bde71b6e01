package mux

import (
	"encoding/json"
	"fmt"

	"github.com/p2prc/p2prc/iptable"
)

// Limits on what one exchange or listing may carry. They sit well inside the
// frame cap; a peer that sends more is broken or hostile, and its message is
// refused as malformed (see checker), so a peer can make us merge at most
// this much per message.
const (
	// MaxExchangeRelays caps the relays in one Exchange.
	MaxExchangeRelays = 256
	// MaxExchangeEntries caps the IP table entries in one Exchange.
	MaxExchangeEntries = 1024
	// MaxListedMappings caps the mappings in one MappingList.
	MaxListedMappings = 4096
)

// RelayInfo is a relay as one peer tells another about it. Its latency is
// not sent: that describes the sender's path, not the receiver's.
type RelayInfo struct {
	Name        string `json:"name"`
	Address     string `json:"address"`               // host:port of the relay's control listener
	Fingerprint string `json:"fingerprint,omitempty"` // SHA-256 of its TLS certificate, hex, when known
}

// Exchange carries what its sender knows: the relays it knows and its P2PRC
// IP table, entries in P2PRC's own format (unknown keys kept). A node sends
// one per session once its grants are in; the relay answers with its own.
// Each side merges what it receives by P2PRC's rules.
type Exchange struct {
	Relays  []RelayInfo     `json:"relays"`
	IPTable []iptable.Entry `json:"ip_table"`
}

// ListMappings asks the relay for the mappings it holds for the asking node.
type ListMappings struct {
	ID uint32 `json:"id"` // echoed in the MappingList
}

// MappingList answers a ListMappings with the asking node's own mappings,
// and never another node's.
type MappingList struct {
	ID       uint32        `json:"id"`
	Mappings []MappingInfo `json:"mappings"`
}

// MappingInfo is one mapping as the relay records it.
type MappingInfo struct {
	Network    string `json:"network"`     // "tcp" or "udp"
	Port       int    `json:"port"`        // the public port
	PublicHost string `json:"public_host"` // the host visitors use
	Relay      string `json:"relay"`       // the relay's name
	Node       string `json:"node"`        // the node's name, as the relay records it
	Local      string `json:"local"`       // the node's local target, as the node asked
	Created    int64  `json:"created"`     // Unix seconds; 0: unknown
	LastSeen   int64  `json:"last_seen"`   // Unix seconds the node was last connected; 0: unknown
}

func (*Exchange) Type() Type     { return TypeExchange }
func (*ListMappings) Type() Type { return TypeListMappings }
func (*MappingList) Type() Type  { return TypeMappingList }

// checker is implemented by messages that carry lists: decode calls check
// after the payload decoded, and a failure makes the frame ErrMalformed.
type checker interface {
	check() error
}

// check enforces the caps, and puts the IP table's kept values in the form
// they take on the wire (compact, HTML characters escaped), so that a
// message reads the same however its sender spaced it.
func (x *Exchange) check() error {
	if len(x.Relays) > MaxExchangeRelays || len(x.IPTable) > MaxExchangeEntries {
		return fmt.Errorf("%d relays and %d IP table entries; the limits are %d and %d",
			len(x.Relays), len(x.IPTable), MaxExchangeRelays, MaxExchangeEntries)
	}
	for i := range x.IPTable {
		for k, v := range x.IPTable[i].Extra {
			canon, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("IP table entry %d, key %q: %v", i+1, k, err)
			}
			x.IPTable[i].Extra[k] = canon
		}
	}
	return nil
}

func (l *MappingList) check() error {
	if len(l.Mappings) > MaxListedMappings {
		return fmt.Errorf("%d mappings; the limit is %d", len(l.Mappings), MaxListedMappings)
	}
	return nil
}
