package iptable

import (
	"encoding/json"
	"slices"
)

// SameNode reports whether e and o describe the same machine, by P2PRC's rule
// (p2p.RemoveDuplicates): the same IPV4 and ServerPort with IPV4 set, or the
// same IPV6 with IPV6 set. Entries with neither address match nothing.
func (e Entry) SameNode(o Entry) bool {
	return (e.IPV4 != "" && e.IPV4 == o.IPV4 && e.ServerPort == o.ServerPort) ||
		(e.IPV6 != "" && e.IPV6 == o.IPV6)
}

// Merge adds to the table the entries of in that it does not hold yet, as
// P2PRC merges a table a peer sends, and returns how many it added.
//
// The rules are P2PRC's: an entry that is the SameNode as one already in the
// table, or as an earlier one in in, is a duplicate and only the first copy is
// kept; an entry with NAT true and EscapeImplementation "None" is unreachable
// and dropped. Two rules are ours: an entry with neither IPV4 nor IPV6 is
// dropped (it can be neither dialled nor deduplicated), and nothing is added
// once the table holds MaxEntries entries, so a peer cannot grow it without
// bound.
//
// Entries already in the table are kept as they are, never overwritten by a
// peer's copy. P2PRC, whose handler puts the received table first, lets the
// peer's copy win; we do not, because a peer's copy is second-hand (its
// Latency is the peer's own measurement) and may be wrong or hostile. What
// this machine knows first-hand, such as its own entry, goes in with Upsert.
//
// Added entries are copies: in may be reused afterwards.
func (t *Table) Merge(in []Entry) (added int) {
	idx := newNodeIndex(t.Entries)
	for _, e := range in {
		if len(t.Entries) >= MaxEntries {
			break
		}
		if e.IPV4 == "" && e.IPV6 == "" || e.NAT && e.EscapeImplementation == "None" || idx.has(e) {
			continue
		}
		e = e.clone()
		t.Entries = append(t.Entries, e)
		idx.add(e)
		added++
	}
	return added
}

// Upsert puts a copy of e in the table: in place of the first entry that is
// the SameNode as e, or at the end if there is none. Any further entries that
// are the SameNode as e are removed, so the table holds e once. The whole
// entry is replaced, Extra included. Upsert is not limited by MaxEntries.
func (t *Table) Upsert(e Entry) {
	e = e.clone()
	at := -1
	kept := t.Entries[:0]
	for _, o := range t.Entries {
		if e.SameNode(o) {
			if at >= 0 {
				continue
			}
			at = len(kept)
			o = e
		}
		kept = append(kept, o)
	}
	clear(t.Entries[len(kept):])
	t.Entries = kept
	if at < 0 {
		t.Entries = append(t.Entries, e)
	}
}

// clone returns e with its own copy of Extra.
func (e Entry) clone() Entry {
	if e.Extra != nil {
		extra := make(map[string]json.RawMessage, len(e.Extra))
		for k, v := range e.Extra {
			extra[k] = slices.Clone(v)
		}
		e.Extra = extra
	}
	return e
}

// nodeIndex answers SameNode against many entries at once.
type nodeIndex struct {
	v4 map[[2]string]struct{} // IPV4, ServerPort
	v6 map[string]struct{}
}

func newNodeIndex(entries []Entry) *nodeIndex {
	idx := &nodeIndex{v4: make(map[[2]string]struct{}), v6: make(map[string]struct{})}
	for _, e := range entries {
		idx.add(e)
	}
	return idx
}

func (idx *nodeIndex) add(e Entry) {
	if e.IPV4 != "" {
		idx.v4[[2]string{e.IPV4, e.ServerPort}] = struct{}{}
	}
	if e.IPV6 != "" {
		idx.v6[e.IPV6] = struct{}{}
	}
}

func (idx *nodeIndex) has(e Entry) bool {
	if _, ok := idx.v4[[2]string{e.IPV4, e.ServerPort}]; ok && e.IPV4 != "" {
		return true
	}
	_, ok := idx.v6[e.IPV6]
	return ok && e.IPV6 != ""
}

// Remove deletes every entry that is the SameNode as e and returns how many
// it deleted.
func (t *Table) Remove(e Entry) (removed int) {
	kept := t.Entries[:0]
	for _, o := range t.Entries {
		if e.SameNode(o) {
			removed++
			continue
		}
		kept = append(kept, o)
	}
	clear(t.Entries[len(kept):])
	t.Entries = kept
	return removed
}
